"""Multi-dicts with mitmproxy's API (mitmrs's own implementation)."""
from collections.abc import MutableMapping


class _MultiDict(MutableMapping):
    """Ordered (key, value) pairs; item access works on the first match."""

    fields: tuple

    @staticmethod
    def _kconv(key):
        return key

    @staticmethod
    def _reduce_values(values):
        return values[0]

    def __getitem__(self, key):
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        return self._reduce_values(values)

    def __setitem__(self, key, value):
        self.set_all(key, [value])

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        k = self._kconv(key)
        self.fields = tuple(f for f in self.fields if self._kconv(f[0]) != k)

    def __iter__(self):
        seen = set()
        for k, _ in self.fields:
            ck = self._kconv(k)
            if ck not in seen:
                seen.add(ck)
                yield k

    def __len__(self):
        return len({self._kconv(k) for k, _ in self.fields})

    def __contains__(self, key):
        k = self._kconv(key)
        return any(self._kconv(f[0]) == k for f in self.fields)

    def __eq__(self, other):
        if isinstance(other, _MultiDict):
            return self.fields == other.fields
        return False

    def __hash__(self):
        return hash(self.fields)

    def get_all(self, key):
        k = self._kconv(key)
        return [v for kk, v in self.fields if self._kconv(kk) == k]

    def set_all(self, key, values):
        values = list(values)
        k = self._kconv(key)
        new = []
        for f in self.fields:
            if self._kconv(f[0]) == k:
                if values:
                    new.append((f[0], values.pop(0)))
            else:
                new.append(f)
        for v in values:
            new.append((key, v))
        self.fields = tuple(new)

    def add(self, key, value):
        self.insert(len(self.fields), key, value)

    def insert(self, index, key, value):
        lst = list(self.fields)
        lst.insert(index, (key, value))
        self.fields = tuple(lst)

    def keys(self, multi=False):
        return (k for k, _ in self.items(multi))

    def values(self, multi=False):
        return (v for _, v in self.items(multi))

    def items(self, multi=False):
        if multi:
            return iter(self.fields)
        return ((k, self[k]) for k in self)

    def __repr__(self):
        return "%s[%s]" % (type(self).__name__, ", ".join(repr(f) for f in self.fields))


class MultiDict(_MultiDict):
    def __init__(self, fields=()):
        self.fields = tuple(tuple(i) for i in fields)

    def get_state(self):
        return self.fields

    def set_state(self, state):
        self.fields = tuple(tuple(x) for x in state)

    @classmethod
    def from_state(cls, state):
        return cls(state)

    def copy(self):
        return type(self)(self.fields)


class MultiDictView(_MultiDict):
    """A multi-dict view backed by getter/setter functions for the field list."""

    def __init__(self, getter, setter):
        self._getter = getter
        self._setter = setter

    @property
    def fields(self):
        return self._getter()

    @fields.setter
    def fields(self, value):
        self._setter(value)

    def copy(self):
        return MultiDict(self.fields)
