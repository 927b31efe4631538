//! Console log lines in mitmdump's format: `[HH:MM:SS.mmm][client] message`, the
//! client part present when the event carries a `client` field. Colours only on a
//! terminal. Events come through `tracing`.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct MitmFormat {
    color: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    client: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "client" => self.client = Some(format!("{value:?}")),
            name => {
                use std::fmt::Write;
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "client" => self.client = Some(value.to_string()),
            _ => self.record_debug(field, &value),
        }
    }
}

/// How many error-level events were logged (mitmproxy's `errorcheck`: errors
/// logged during start-up stop the proxy).
pub static ERRORS_LOGGED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn clock() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

impl<S, N> FormatEvent<S, N> for MitmFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let time = format!("[{}]", clock());
        let level = *event.metadata().level();
        if level == Level::ERROR {
            ERRORS_LOGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (tc, cc, mc) = if self.color {
            let m = match level {
                Level::ERROR => "\x1b[31m",
                Level::WARN => "\x1b[33m",
                Level::DEBUG | Level::TRACE => "\x1b[2m",
                _ => "",
            };
            ("\x1b[2;36m", "\x1b[2;33m", m)
        } else {
            ("", "", "")
        };
        let reset = if self.color { "\x1b[0m" } else { "" };
        write!(w, "{tc}{time}{reset}")?;
        if let Some(c) = &f.client {
            write!(w, "{cc}[{c}]{reset}")?;
        }
        writeln!(w, " {mc}{}{}{reset}", f.message, f.rest)
    }
}

/// Installs the subscriber. `verbosity` is mitmproxy's `termlog_verbosity`.
pub fn init(verbosity: &str) {
    let level = match verbosity {
        "error" => "error",
        "warn" => "warn",
        "debug" => "debug",
        _ => "info",
    };
    let filter = EnvFilter::try_from_env("MITMRS_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,mitmrs={level},mitmrs_proxy={level},mitmrs_core={level},mitmrs_tls={level},mitmrs_python={level},mitmrs::addon={level}"
        ))
    });
    let color = std::io::stdout().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(MitmFormat { color })
        .with_writer(std::io::stdout)
        .try_init();
}
