//! The typed option registry, in the line of mitmproxy's `OptManager`.
//!
//! Every setting of mitmrs (and of its addons) is a named, typed option with a
//! default and a help text. Options are registered with [`Options::add_option`],
//! read with [`Options::get`] and the typed getters, and changed with
//! [`Options::set`], [`Options::update`] or, from the command line,
//! [`Options::parse_set`] (`--set name=value`).
//!
//! Semantics follow mitmproxy, with these documented differences:
//! - bool values accept `true/false`, `yes/no`, `on/off` and `1/0`, case-insensitively
//!   (mitmproxy accepts only `true` and `false`); a bare `--set name` means `true`;
//! - a bare `--set name` for a non-bool option is an error (a value is required);
//! - for an optional option (`optional str`, `optional int`), an empty value means
//!   none; for `optional int`, `none` (any case) also means none;
//! - for a `sequence of str` option, the first `--set` replaces the default and later
//!   ones append; an empty value adds nothing (so `--set name=` clears the list);
//! - several `--set` of a scalar option: the last one wins;
//! - subscribers cannot veto a change: an addon that rejects a value reports
//!   [`OptionsError::Rejected`] itself;
//! - a `float` option also accepts an [`OptionValue::Int`], stored as a float.
//!
//! Names given on the command line before the addon that defines them is loaded are
//! kept as raw strings ("deferred") and applied by [`Options::add_option`];
//! [`Options::check_deferred`] reports those never defined.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

mod core;
pub use self::core::{
    core_option_specs, parse_size, proxy_mode, register_core_options, size_option, validate_core,
};

/// The type of an option, as mitmproxy's typespecs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionType {
    Bool,
    Str,
    /// `Optional[str]`
    OptStr,
    Int,
    /// `Optional[int]`
    OptInt,
    Float,
    /// `Sequence[str]`
    StrSeq,
}

impl OptionType {
    /// The type's name as mitmproxy prints it (`mitmdump --options`).
    pub fn name(&self) -> &'static str {
        match self {
            OptionType::Bool => "bool",
            OptionType::Str => "str",
            OptionType::OptStr => "optional str",
            OptionType::Int => "int",
            OptionType::OptInt => "optional int",
            OptionType::Float => "float",
            OptionType::StrSeq => "sequence of str",
        }
    }

    /// What a value of this type looks like, for error messages.
    fn expected(&self) -> String {
        let what = match self {
            OptionType::Bool => return "true or false".to_string(),
            OptionType::Str => "a string",
            OptionType::OptStr => "a string, or empty for none",
            OptionType::Int => "an integer",
            OptionType::OptInt => "an integer, or empty for none",
            OptionType::Float => "a number",
            OptionType::StrSeq => "a list of strings",
        };
        format!("{what} ({})", self.name())
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of an option. `None` is the value of an unset optional option.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    Bool(bool),
    Str(String),
    Int(i64),
    Float(f64),
    None,
    StrSeq(Vec<String>),
}

impl fmt::Display for OptionValue {
    /// A plain rendering for messages: `true`, `abc`, `8080`, `none`, `[a, b]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Str(s) => f.write_str(s),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::None => f.write_str("none"),
            OptionValue::StrSeq(v) => write!(f, "[{}]", v.join(", ")),
        }
    }
}

/// The definition of an option.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub typ: OptionType,
    pub default: OptionValue,
    pub help: String,
    /// Allowed values of a `str`, `optional str` or `sequence of str` option.
    pub choices: Option<Vec<String>>,
}

impl OptionSpec {
    /// A spec without choices.
    pub fn new(
        name: impl Into<String>,
        typ: OptionType,
        default: OptionValue,
        help: impl Into<String>,
    ) -> Self {
        OptionSpec {
            name: name.into(),
            typ,
            default,
            help: help.into(),
            choices: None,
        }
    }

    /// The same spec, restricted to `choices`.
    pub fn with_choices<S: Into<String>>(mut self, choices: impl IntoIterator<Item = S>) -> Self {
        self.choices = Some(choices.into_iter().map(Into::into).collect());
        self
    }
}

/// Errors of the option registry. Their `Display` is the message the CLI prints
/// before exiting with status 2.
#[non_exhaustive]
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    /// No option of that name; `suggestion` is the closest registered name, if close.
    #[error("unknown option \"{name}\"{}", suggestion_text(.suggestion))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    /// A value that does not fit the option's type, choices or constraints.
    #[error("invalid value \"{value}\" for option \"{name}\": expected {expected}")]
    InvalidValue {
        name: String,
        value: String,
        expected: String,
    },
    /// The option was added twice with different specs.
    #[error(
        "option \"{name}\" is already defined with a different type, default, help or choices"
    )]
    Duplicate { name: String },
    /// An addon's `configure` rejected a value (mitmproxy's `exceptions.OptionsError`).
    #[error("option \"{name}\": {message}")]
    Rejected { name: String, message: String },
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean \"{s}\"?"),
        None => String::new(),
    }
}

/// A change callback: gets the registry and the names whose value changed.
pub type OptionsCallback = dyn Fn(&Options, &BTreeSet<String>) + Send + Sync;

type Subscriber = Arc<OptionsCallback>;

struct Entry {
    spec: OptionSpec,
    value: OptionValue,
}

#[derive(Default)]
struct State {
    options: BTreeMap<String, Entry>,
    /// Raw `--set` values of not yet defined options; `None` is a bare `--set name`.
    deferred: BTreeMap<String, Vec<Option<String>>>,
    /// Sequence options already set from the command line: later `--set` append.
    cli_set: BTreeSet<String>,
}

#[derive(Default)]
struct Shared {
    state: RwLock<State>,
    subscribers: RwLock<Vec<Subscriber>>,
}

/// The shared option registry. Cheap to clone (all clones share the same
/// options); thread-safe.
#[derive(Clone, Default)]
pub struct Options {
    shared: Arc<Shared>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.read();
        f.debug_map()
            .entries(st.options.iter().map(|(k, e)| (k, &e.value)))
            .finish()
    }
}

impl Options {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the subscribers with `changed`, unless it is empty. No lock is held
    /// during the calls.
    fn notify(&self, changed: &BTreeSet<String>) {
        if changed.is_empty() {
            return;
        }
        let subs: Vec<Subscriber> = self
            .shared
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for f in subs {
            f(self, changed);
        }
    }

    /// Registers an option. Re-adding an identical spec is a no-op; a different
    /// spec is [`OptionsError::Duplicate`]; a default that does not fit the type or
    /// the choices is [`OptionsError::InvalidValue`].
    ///
    /// A value given earlier with a deferred [`Options::parse_set`] is parsed and
    /// applied now (subscribers are notified if it changes the value). A bad deferred
    /// value is [`OptionsError::InvalidValue`]; the option stays registered with its
    /// default and the deferred value is dropped.
    pub fn add_option(&self, spec: OptionSpec) -> Result<(), OptionsError> {
        let mut changed = BTreeSet::new();
        let result = {
            let mut st = self.write();
            if let Some(existing) = st.options.get(&spec.name) {
                return if existing.spec == spec {
                    Ok(())
                } else {
                    Err(OptionsError::Duplicate { name: spec.name })
                };
            }
            let default = check_value(&spec, spec.default.clone())?;
            let name = spec.name.clone();
            st.options.insert(
                name.clone(),
                Entry {
                    spec,
                    value: default,
                },
            );
            match st.deferred.remove(&name) {
                None => Ok(()),
                Some(raws) => {
                    let mut res = Ok(());
                    for raw in raws {
                        match apply_raw(&mut st, &name, raw.as_deref()) {
                            Ok(true) => {
                                changed.insert(name.clone());
                            }
                            Ok(false) => {}
                            Err(e) => {
                                res = Err(e);
                                break;
                            }
                        }
                    }
                    res
                }
            }
        };
        self.notify(&changed);
        result
    }

    /// The spec of an option.
    pub fn spec(&self, name: &str) -> Option<OptionSpec> {
        self.read().options.get(name).map(|e| e.spec.clone())
    }

    /// All registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().options.keys().cloned().collect()
    }

    /// Names given to a deferred [`Options::parse_set`] and not (yet) registered, sorted.
    pub fn deferred(&self) -> Vec<String> {
        self.read().deferred.keys().cloned().collect()
    }

    /// The current value of an option.
    pub fn get(&self, name: &str) -> Option<OptionValue> {
        self.read().options.get(name).map(|e| e.value.clone())
    }

    /// A bool option's value; false if the option is missing or not a bool.
    pub fn get_bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(OptionValue::Bool(true)))
    }

    /// An int option's value; `None` if unset, missing or not an int.
    pub fn get_int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(OptionValue::Int(i)) => Some(i),
            _ => None,
        }
    }

    /// A str option's value; `None` if unset, missing or not a string.
    pub fn get_str(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(OptionValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A sequence option's value; empty if missing or not a sequence.
    pub fn get_seq(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(OptionValue::StrSeq(v)) => v,
            _ => Vec::new(),
        }
    }

    /// Sets an option to a typed value, checked against the type and the choices.
    /// Returns whether the value changed; subscribers are notified if it did.
    pub fn set(&self, name: &str, value: OptionValue) -> Result<bool, OptionsError> {
        let changed = self.update(vec![(name.to_string(), value)])?;
        Ok(!changed.is_empty())
    }

    /// Applies several typed updates atomically: all are checked first, and on any
    /// error nothing changes. Returns the names whose value changed; subscribers are
    /// notified once with that set (not at all if it is empty).
    pub fn update(
        &self,
        updates: Vec<(String, OptionValue)>,
    ) -> Result<BTreeSet<String>, OptionsError> {
        let mut changed = BTreeSet::new();
        {
            let mut st = self.write();
            let mut checked = Vec::with_capacity(updates.len());
            for (name, value) in updates {
                let entry = st.options.get(&name).ok_or_else(|| unknown(&st, &name))?;
                let value = check_value(&entry.spec, value)?;
                checked.push((name, value));
            }
            // The value each name had before the update: a name given twice is
            // changed only if its final value differs.
            let mut before: BTreeMap<String, OptionValue> = BTreeMap::new();
            for (name, value) in checked {
                let entry = st.options.get_mut(&name).expect("checked above");
                before.entry(name).or_insert_with(|| entry.value.clone());
                entry.value = value;
            }
            for (name, old) in before {
                if st.options[&name].value != old {
                    changed.insert(name);
                }
            }
        }
        self.notify(&changed);
        Ok(changed)
    }

    /// Applies a command-line `--set` argument: `name=value`, or a bare `name`
    /// meaning `true` for a bool option (a bare name of any other option is
    /// [`OptionsError::InvalidValue`]). Values are parsed as by
    /// [`Options::parse_value`]. For a `sequence of str` option, the first `--set`
    /// replaces the default and later ones append.
    ///
    /// An unknown name is [`OptionsError::Unknown`], unless `defer_unknown`: then the
    /// raw value is kept until [`Options::add_option`] defines the option (scripts
    /// define options after the command line is parsed). See [`Options::check_deferred`].
    pub fn parse_set(&self, arg: &str, defer_unknown: bool) -> Result<(), OptionsError> {
        let (name, raw) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        let mut changed = BTreeSet::new();
        {
            let mut st = self.write();
            if !st.options.contains_key(name) {
                if defer_unknown && !name.is_empty() {
                    st.deferred
                        .entry(name.to_string())
                        .or_default()
                        .push(raw.map(str::to_string));
                    return Ok(());
                }
                return Err(unknown(&st, name));
            }
            if apply_raw(&mut st, name, raw)? {
                changed.insert(name.to_string());
            }
        }
        self.notify(&changed);
        Ok(())
    }

    /// Fails with [`OptionsError::Unknown`] (for the first name, sorted) if some
    /// deferred `--set` names were never defined. The CLI calls this once all addons
    /// and scripts are loaded.
    pub fn check_deferred(&self) -> Result<(), OptionsError> {
        let st = self.read();
        match st.deferred.keys().next() {
            Some(name) => Err(unknown(&st, name)),
            None => Ok(()),
        }
    }

    /// Parses a string for a named option without applying it.
    ///
    /// - bool: `true/false/yes/no/on/off/1/0`, case-insensitive;
    /// - str: the string as is; optional str: empty means none;
    /// - int: decimal, may be negative; optional int: empty or `none` means none;
    /// - float: a finite decimal number;
    /// - sequence of str: a one-element list (empty for an empty string);
    /// - choices, if any, are checked.
    pub fn parse_value(&self, name: &str, raw: &str) -> Result<OptionValue, OptionsError> {
        let st = self.read();
        let entry = st.options.get(name).ok_or_else(|| unknown(&st, name))?;
        parse_raw(&entry.spec, Some(raw))
    }

    /// The `--options` listing, in the format of `mitmdump --options` (YAML usable
    /// as a config file): for every option, sorted by name, a blank line, the help
    /// text wrapped as `# ` comment lines and ending with `Type <type>.` (and
    /// `Valid values are 'a', 'b'.` when there are choices), then `name: default`.
    pub fn help_text(&self) -> String {
        let st = self.read();
        let mut out = String::new();
        for (name, entry) in &st.options {
            let spec = &entry.spec;
            let mut text = spec.help.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some(choices) = &spec.choices {
                let list: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                push_sentence(&mut text, &format!("Valid values are {}.", list.join(", ")));
            }
            push_sentence(&mut text, &format!("Type {}.", spec.typ.name()));
            out.push('\n');
            for line in wrap(&text, 70) {
                out.push_str("# ");
                out.push_str(&line);
                out.push('\n');
            }
            out.push_str(name);
            out.push(':');
            match &spec.default {
                OptionValue::None => {}
                OptionValue::StrSeq(v) if !v.is_empty() => {
                    for item in v {
                        out.push_str("\n- ");
                        out.push_str(&yaml_scalar(item));
                    }
                }
                v => {
                    out.push(' ');
                    out.push_str(&yaml_value(v));
                }
            }
            out.push('\n');
        }
        out
    }

    /// The registered name closest to `name` by edit distance (insertions,
    /// deletions, substitutions and transpositions of adjacent characters), if the
    /// distance is at most `max(2, len(name) / 3)`. Ties go to the first name in
    /// sorted order.
    pub fn closest(&self, name: &str) -> Option<String> {
        closest_in(&self.read(), name)
    }

    /// Calls `f` with the set of changed names after each [`Options::set`],
    /// [`Options::update`], [`Options::parse_set`] or [`Options::add_option`] that
    /// changed a value. `f` is called without any lock held, so it may read and set
    /// options.
    pub fn subscribe(&self, f: Box<OptionsCallback>) {
        self.shared
            .subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::from(f));
    }
}

fn unknown(st: &State, name: &str) -> OptionsError {
    OptionsError::Unknown {
        name: name.to_string(),
        suggestion: closest_in(st, name),
    }
}

fn closest_in(st: &State, name: &str) -> Option<String> {
    let query: Vec<char> = name.chars().collect();
    let max = std::cmp::max(2, query.len() / 3);
    let mut best: Option<(usize, &String)> = None;
    for candidate in st.options.keys() {
        let d = edit_distance(&query, &candidate.chars().collect::<Vec<_>>());
        let better = match best {
            None => true,
            Some((bd, _)) => d < bd,
        };
        if d <= max && better {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, n)| n.clone())
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    // Three rows: two back (for transpositions), previous, current.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn invalid(
    spec: &OptionSpec,
    value: impl Into<String>,
    expected: impl Into<String>,
) -> OptionsError {
    OptionsError::InvalidValue {
        name: spec.name.clone(),
        value: value.into(),
        expected: expected.into(),
    }
}

fn check_choice(spec: &OptionSpec, s: &str) -> Result<(), OptionsError> {
    match &spec.choices {
        Some(choices) if !choices.iter().any(|c| c == s) => {
            Err(invalid(spec, s, format!("one of: {}", choices.join(", "))))
        }
        _ => Ok(()),
    }
}

/// Checks a typed value against a spec; returns it normalized (an int for a
/// float option becomes a float).
fn check_value(spec: &OptionSpec, value: OptionValue) -> Result<OptionValue, OptionsError> {
    use OptionType as T;
    use OptionValue as V;
    let value = match (&spec.typ, value) {
        (T::Bool, v @ V::Bool(_)) => v,
        (T::Str | T::OptStr, v @ V::Str(_)) => v,
        (T::OptStr | T::OptInt, V::None) => V::None,
        (T::Int | T::OptInt, v @ V::Int(_)) => v,
        (T::Float, v @ V::Float(_)) => v,
        (T::Float, V::Int(i)) => V::Float(i as f64),
        (T::StrSeq, v @ V::StrSeq(_)) => v,
        (typ, v) => return Err(invalid(spec, v.to_string(), typ.expected())),
    };
    match &value {
        V::Str(s) => check_choice(spec, s)?,
        V::StrSeq(items) => {
            for s in items {
                check_choice(spec, s)?;
            }
        }
        _ => {}
    }
    Ok(value)
}

/// Parses a raw command-line value (`None`: a bare name) for a spec.
fn parse_raw(spec: &OptionSpec, raw: Option<&str>) -> Result<OptionValue, OptionsError> {
    let raw = match raw {
        Some(r) => r,
        None if spec.typ == OptionType::Bool => return Ok(OptionValue::Bool(true)),
        None => {
            return Err(invalid(
                spec,
                "",
                format!(
                    "a value, as in --set {}=VALUE ({})",
                    spec.name,
                    spec.typ.name()
                ),
            ))
        }
    };
    let value = match spec.typ {
        OptionType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => OptionValue::Bool(true),
            "false" | "no" | "off" | "0" => OptionValue::Bool(false),
            _ => return Err(invalid(spec, raw, spec.typ.expected())),
        },
        OptionType::Str => OptionValue::Str(raw.to_string()),
        OptionType::OptStr if raw.is_empty() => OptionValue::None,
        OptionType::OptStr => OptionValue::Str(raw.to_string()),
        OptionType::OptInt if raw.trim().is_empty() || raw.trim().eq_ignore_ascii_case("none") => {
            OptionValue::None
        }
        OptionType::Int | OptionType::OptInt => match raw.trim().parse::<i64>() {
            Ok(i) => OptionValue::Int(i),
            Err(_) => return Err(invalid(spec, raw, spec.typ.expected())),
        },
        OptionType::Float => match raw.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => OptionValue::Float(x),
            _ => return Err(invalid(spec, raw, spec.typ.expected())),
        },
        OptionType::StrSeq if raw.is_empty() => OptionValue::StrSeq(Vec::new()),
        OptionType::StrSeq => OptionValue::StrSeq(vec![raw.to_string()]),
    };
    check_value(spec, value)
}

/// Parses and applies one raw `--set` value to a registered option, with the
/// append semantics of sequences. Returns whether the value changed.
fn apply_raw(st: &mut State, name: &str, raw: Option<&str>) -> Result<bool, OptionsError> {
    let first_cli = !st.cli_set.contains(name);
    let entry = st.options.get_mut(name).expect("caller checked the name");
    let mut value = parse_raw(&entry.spec, raw)?;
    if let (OptionValue::StrSeq(items), OptionValue::StrSeq(current), false) =
        (&mut value, &entry.value, first_cli)
    {
        let mut all = current.clone();
        all.append(items);
        *items = all;
    }
    let changed = entry.value != value;
    entry.value = value;
    if entry.spec.typ == OptionType::StrSeq {
        st.cli_set.insert(name.to_string());
    }
    Ok(changed)
}

fn push_sentence(text: &mut String, sentence: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(sentence);
}

/// Greedy word wrap at `width` characters (a longer word gets its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn yaml_value(v: &OptionValue) -> String {
    match v {
        OptionValue::Bool(b) => b.to_string(),
        OptionValue::Str(s) => yaml_scalar(s),
        OptionValue::Int(i) => i.to_string(),
        OptionValue::Float(x) if x.is_nan() => ".nan".to_string(),
        OptionValue::Float(x) if x.is_infinite() => {
            if *x > 0.0 { ".inf" } else { "-.inf" }.to_string()
        }
        OptionValue::Float(x) => format!("{x:?}"),
        OptionValue::None => String::new(),
        OptionValue::StrSeq(v) => format!(
            "[{}]",
            v.iter()
                .map(|s| yaml_scalar(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A string as a YAML scalar: plain when that reads back as the same string,
/// single-quoted otherwise, double-quoted with escapes if it has control characters.
fn yaml_scalar(s: &str) -> String {
    if s.chars().any(char::is_control) {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    let lower = s.to_ascii_lowercase();
    let needs_quotes = s.is_empty()
        || s.starts_with(char::is_whitespace)
        || s.ends_with(char::is_whitespace)
        || s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || matches!(
            lower.as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
        )
        || s.parse::<f64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o");
    if needs_quotes {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        s.to_string()
    }
}

const SIZE_EXPECTED: &str = "a number of bytes with an optional suffix b, k, m, g or t, e.g. 3m";

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: &str, b: &str) -> usize {
        edit_distance(
            &a.chars().collect::<Vec<_>>(),
            &b.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn edit_distance_cases() {
        for (a, b, want) in [
            ("", "", 0),
            ("abc", "", 3),
            ("", "abc", 3),
            ("abc", "abc", 0),
            ("kitten", "sitting", 3),
            ("strem_large_bodies", "stream_large_bodies", 1),
            ("lissten_port", "listen_port", 1),
            ("listne_port", "listen_port", 1),
            ("ab", "ba", 1),
            ("ca", "abc", 3),
        ] {
            assert_eq!(d(a, b), want, "{a} -> {b}");
        }
    }

    #[test]
    fn wrap_cases() {
        assert_eq!(wrap("a b c", 3), vec!["a b", "c"]);
        assert_eq!(wrap("", 70), Vec::<String>::new());
        assert_eq!(wrap("toolongword x", 4), vec!["toolongword", "x"]);
    }

    #[test]
    fn yaml_scalar_cases() {
        for (s, want) in [
            ("~/.mitmproxy", "~/.mitmproxy"),
            ("", "''"),
            ("true", "'true'"),
            ("8080", "'8080'"),
            ("64k", "64k"),
            ("it's: x", "'it''s: x'"),
            ("-x", "'-x'"),
            ("a\nb", "\"a\\nb\""),
            ("127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(yaml_scalar(s), want, "{s:?}");
        }
    }
}
