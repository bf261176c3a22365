"""
The configuration model: GOST's configuration schema as Python values.

Command lines (L{gostrelay.config.url}) and files (L{gostrelay.config.files})
both produce a L{Config}; the assembly (L{gostrelay.build}) reads it; C{-O}
prints it back with L{Config.toDict}.  Field names are GOST's YAML keys, in
GOST's order, so that printing gives what C{gost -O yaml} gives.  Keys this
model does not know are kept in C{extra} and printed back, never dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gostrelay.config.metadata import Metadata, formatGoDuration, parseGoDuration


class ConfigError(ValueError):
    """
    A configuration cannot be understood; the message names the place.
    """


_PRIVATE = frozenset({"extra", "source", "warnings"})


def _defaultOf(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or value is False or value == 0


@dataclass
class _Section:
    """
    Base of every section: generic conversion to and from GOST's dict form.

    Subclasses declare their fields in GOST's order.  C{_NESTED} maps a field
    to the section class of its value (or of its list items); C{_DURATIONS}
    names typed duration fields (printed as Go durations).
    """

    _NESTED: ClassVar[dict[str, type[_Section]]] = {}
    _LISTS: ClassVar[frozenset[str]] = frozenset()
    _DURATIONS: ClassVar[frozenset[str]] = frozenset()

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=True, kw_only=True)
    #: Where this section came from (a URL, or a path in a file), for messages.
    source: str = field(default="", repr=False, compare=False, kw_only=True)

    @classmethod
    def fromDict(cls, data: Any, where: str = "") -> Any:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
        known = {f.name.lower(): f.name for f in dataclasses.fields(cls) if f.name not in _PRIVATE}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = known.get(str(key).lower())
            if name is None:
                extra[str(key)] = value
                continue
            values[name] = cls._convertIn(name, value, f"{where}.{name}" if where else name)
        obj = cls(**values)
        obj.extra = extra
        obj.source = where
        return obj

    @classmethod
    def _convertIn(cls, name: str, value: Any, where: str) -> Any:
        nested = cls._NESTED.get(name)
        default = _defaultOf(cls, name)
        if value is None:
            # An empty section ("chains:" with everything commented out).
            return default
        if isinstance(default, str) and nested is None:
            # GOST reads scalars into string fields as strings: a numeric
            # password is "123456", a numeric address "8080".
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, (int, float)):
                return str(value)
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
            return value
        if isinstance(default, bool) and isinstance(value, str):
            return value in ("1", "t", "T", "TRUE", "true", "True")
        if isinstance(default, int) and not isinstance(default, bool) and name not in cls._DURATIONS:
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
            if not isinstance(value, int):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
            return value
        if nested is not None:
            if name in cls._LISTS:
                if not isinstance(value, list):
                    raise ConfigError(f"{where}: expected a list")
                return [
                    nested.fromDict(item, f"{where}[{i}]") if isinstance(item, dict) else nested.fromName(item, f"{where}[{i}]")
                    for i, item in enumerate(value)
                ]
            return nested.fromDict(value, where)
        if name in cls._DURATIONS:
            return _durationIn(value, where)
        if name == "metadata":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping")
            return dict(value)
        return value

    @classmethod
    def fromName(cls, value: Any, where: str) -> Any:
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")

    def toDict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _PRIVATE:
                continue
            value = getattr(self, f.name)
            if _empty(value):
                continue
            if isinstance(value, _Section):
                value = value.toDict()
            elif isinstance(value, list):
                value = [v.toDict() if isinstance(v, _Section) else v for v in value]
            elif f.name in self._DURATIONS:
                value = formatGoDuration(value)
            out[f.name] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def _durationIn(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like \"10s\"")
    if isinstance(value, (int, float)):
        # GOST's decoder reads a bare number as nanoseconds, which nobody
        # means; we read seconds, like metadata durations (docs/differences).
        return float(value)
    if isinstance(value, str):
        parsed = parseGoDuration(value)
        if parsed is None:
            try:
                return float(int(value))
            except ValueError:
                raise ConfigError(f"{where}: not a duration: {value!r}") from None
        return parsed
    raise ConfigError(f"{where}: expected a duration like \"10s\"")


@dataclass
class AuthConfig(_Section):
    username: str = ""
    password: str = ""
    file: str = ""


@dataclass
class TLSConfig(_Section):
    certFile: str = ""
    keyFile: str = ""
    caFile: str = ""
    secure: bool = False
    serverName: str = ""


@dataclass
class SelectorConfig(_Section):
    _DURATIONS = frozenset({"failTimeout"})

    strategy: str = ""
    maxFails: int = 0
    failTimeout: float = 0.0


@dataclass
class HandlerConfig(_Section):
    _NESTED = {"auth": AuthConfig, "tls": TLSConfig}

    type: str = ""
    retries: int = 0
    chain: str = ""
    chainGroup: Any = None
    auther: str = ""
    authers: list[str] = field(default_factory=list)
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    limiter: str = ""
    observer: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class ListenerConfig(_Section):
    _NESTED = {"auth": AuthConfig, "tls": TLSConfig}

    type: str = ""
    chain: str = ""
    chainGroup: Any = None
    auther: str = ""
    authers: list[str] = field(default_factory=list)
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class ForwardNodeConfig(_Section):
    _NESTED = {"auth": AuthConfig, "tls": TLSConfig}

    name: str = ""
    addr: str = ""
    network: str = ""
    bypass: str = ""
    bypasses: list[str] = field(default_factory=list)
    protocol: str = ""
    host: str = ""
    path: str = ""
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class ForwarderConfig(_Section):
    _NESTED = {"selector": SelectorConfig, "nodes": ForwardNodeConfig}
    _LISTS = frozenset({"nodes"})

    name: str = ""
    selector: SelectorConfig | None = None
    nodes: list[ForwardNodeConfig] = field(default_factory=list)


@dataclass
class ServiceConfig(_Section):
    _NESTED = {
        "handler": HandlerConfig,
        "listener": ListenerConfig,
        "forwarder": ForwarderConfig,
    }

    name: str = ""
    addr: str = ""
    interface: str = ""
    admission: str = ""
    admissions: list[str] = field(default_factory=list)
    bypass: str = ""
    bypasses: list[str] = field(default_factory=list)
    resolver: str = ""
    hosts: str = ""
    limiter: str = ""
    climiter: str = ""
    rlimiter: str = ""
    logger: str = ""
    loggers: list[str] = field(default_factory=list)
    observer: str = ""
    handler: HandlerConfig | None = None
    listener: ListenerConfig | None = None
    forwarder: ForwarderConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class ConnectorConfig(_Section):
    _NESTED = {"auth": AuthConfig, "tls": TLSConfig}

    type: str = ""
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class DialerConfig(_Section):
    _NESTED = {"auth": AuthConfig, "tls": TLSConfig}

    type: str = ""
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class NodeConfig(_Section):
    _NESTED = {"connector": ConnectorConfig, "dialer": DialerConfig, "tls": TLSConfig}

    name: str = ""
    addr: str = ""
    network: str = ""
    bypass: str = ""
    bypasses: list[str] = field(default_factory=list)
    resolver: str = ""
    hosts: str = ""
    connector: ConnectorConfig | None = None
    dialer: DialerConfig | None = None
    interface: str = ""
    netns: str = ""
    tls: TLSConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class HopConfig(_Section):
    _NESTED = {"selector": SelectorConfig, "nodes": NodeConfig}
    _LISTS = frozenset({"nodes"})

    name: str = ""
    interface: str = ""
    selector: SelectorConfig | None = None
    bypass: str = ""
    bypasses: list[str] = field(default_factory=list)
    resolver: str = ""
    hosts: str = ""
    nodes: list[NodeConfig] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fromName(cls, value: Any, where: str) -> HopConfig:
        # A hop given only by name refers to a top-level "hops:" entry.
        if isinstance(value, str):
            return cls(name=value)
        raise ConfigError(f"{where}: expected a hop mapping or name, got {value!r}")

    @property
    def md(self) -> Metadata:
        return Metadata(self.metadata)


@dataclass
class ChainConfig(_Section):
    _NESTED = {"selector": SelectorConfig, "hops": HopConfig}
    _LISTS = frozenset({"hops"})

    name: str = ""
    selector: SelectorConfig | None = None
    hops: list[HopConfig] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutherFileConfig(_Section):
    path: str = ""


@dataclass
class AutherConfig(_Section):
    _NESTED = {"auths": AuthConfig, "file": AutherFileConfig}
    _LISTS = frozenset({"auths"})
    _DURATIONS = frozenset({"reload"})

    name: str = ""
    auths: list[AuthConfig] = field(default_factory=list)
    reload: float = 0.0
    file: AutherFileConfig | None = None


@dataclass
class BypassConfig(_Section):
    _DURATIONS = frozenset({"reload"})

    name: str = ""
    reload: float = 0.0
    whitelist: bool = False
    matchers: list[str] = field(default_factory=list)


@dataclass
class NamedListConfig(_Section):
    """
    Sections we do not model (resolvers, hosts, limiters, ...): kept as
    given, with the name pulled out for references.
    """

    name: str = ""


@dataclass
class Config(_Section):
    _NESTED = {
        "services": ServiceConfig,
        "chains": ChainConfig,
        "hops": HopConfig,
        "authers": AutherConfig,
        "admissions": NamedListConfig,
        "bypasses": BypassConfig,
        "resolvers": NamedListConfig,
        "hosts": NamedListConfig,
        "limiters": NamedListConfig,
        "climiters": NamedListConfig,
        "rlimiters": NamedListConfig,
    }
    _LISTS = frozenset(_NESTED)

    services: list[ServiceConfig] = field(default_factory=list)
    chains: list[ChainConfig] = field(default_factory=list)
    hops: list[HopConfig] = field(default_factory=list)
    authers: list[AutherConfig] = field(default_factory=list)
    admissions: list[NamedListConfig] = field(default_factory=list)
    bypasses: list[BypassConfig] = field(default_factory=list)
    resolvers: list[NamedListConfig] = field(default_factory=list)
    hosts: list[NamedListConfig] = field(default_factory=list)
    limiters: list[NamedListConfig] = field(default_factory=list)
    climiters: list[NamedListConfig] = field(default_factory=list)
    rlimiters: list[NamedListConfig] = field(default_factory=list)
    log: Any = None
    api: Any = None
    metrics: Any = None
    #: Ours: worker processes sharing the listening sockets.
    workers: int = 0
    #: What the command line got wrong without it being fatal (unknown
    #: option keys), one line each; never printed by C{-O}.
    warnings: list[str] = field(default_factory=list, repr=False, compare=False, kw_only=True)

    def merge(self, other: Config) -> None:
        """
        Append C{other}'s entries after ours, as GOST merges several C{-C}
        sources and the command line's services and chain.
        """
        for f in dataclasses.fields(self):
            if f.name in _PRIVATE:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list):
                mine.extend(theirs)
            elif not _empty(theirs):
                setattr(self, f.name, theirs)
        self.extra.update(other.extra)

    def chain(self, name: str) -> ChainConfig | None:
        for chain in self.chains:
            if chain.name == name:
                return chain
        return None

    def auther(self, name: str) -> AutherConfig | None:
        for auther in self.authers:
            if auther.name == name:
                return auther
        return None

    def hop(self, name: str) -> HopConfig | None:
        for hop in self.hops:
            if hop.name == name:
                return hop
        return None
