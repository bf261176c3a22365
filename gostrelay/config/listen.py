"""
The one parse rule for C{-L}/C{--listen} values: a GOST service URL or
address, or a Twisted server endpoint description (docs/cli.md, "One parse
rule").

A value containing C{://} is a GOST URL.  Otherwise let P be the text
before the first unescaped C{:}:

  1. P empty, or the value starts with C{[}: a GOST address (C{:8080},
     C{[::1]:8080}), served by the auto handler as GOST does;
  2. P is a server endpoint prefix Twisted knows (its own, ours, or a third
     party's found through L{twisted.plugin}): an endpoint description;
  3. P is a GOST or plugin type name (C{relay:8420}): refused, suggesting
     C{relay://:8420} (unless the value carries GOST user info, C{u:p@...});
  4. the value is GOST's C{[user:pass@]host:port[-port][/targets][?query]}:
     a GOST address;
  5. anything else: refused, naming the nearest prefixes.

A description's per-service flags (C{--handler}, C{--user}, C{--users},
C{--target}, C{--option}) are kept with it in a L{ListenSpec}.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import getPlugins

from gostrelay import registry
from gostrelay.config import names
from gostrelay.config.model import ConfigError
from gostrelay.registry import PluginsMissing, ensureOwnPlugins

URL = "url"
DESCRIPTION = "description"

#: Twisted's built-in server endpoint prefixes (the rest come as plugins).
_TWISTED_BUILTIN = ("tcp", "unix", "ssl")

_GOST_ADDRESS = re.compile(
    r"""^(?:[^@/?]*@)?                      # user info
    (?P<host>[A-Za-z0-9._-]*|\[[0-9A-Za-z:.%]*\]) # host
    :\d+(?:-\d+)?                            # port or port range
    (?:/[^?]*)?                              # targets
    (?:\?.*)?$                               # query
    """,
    re.VERBOSE,
)


def _plausibleHost(host: str) -> bool:
    """
    A host a GOST address without scheme may name: an IP address,
    C{localhost}, or a dotted DNS name.  A single word (C{tpc:8420}) is far
    more often a mistyped prefix than a host name.
    """
    return host == "localhost" or "." in host or host.startswith("[")

_prefixes: frozenset[str] | None = None


def serverPrefixes() -> frozenset[str]:
    """
    Every server endpoint prefix C{serverFromString} accepts here: Twisted's
    built-in ones and every L{IStreamServerEndpointStringParser} plugin
    (ours included, also from an editable install).
    """
    global _prefixes
    if _prefixes is None:
        try:
            ensureOwnPlugins()
        except PluginsMissing:
            pass  # reported, in one line, when the types are looked up
        found = set(_TWISTED_BUILTIN)
        try:
            found.update(getattr(endpoints, "_serverParsers", {}))
        except ImportError:  # pragma: no cover
            pass
        found.update(p.prefix for p in getPlugins(IStreamServerEndpointStringParser))
        _prefixes = frozenset(found)
    return _prefixes


def forgetPrefixes() -> None:
    """Forget the cached prefixes (for tests that add a plugin)."""
    global _prefixes
    _prefixes = None


def typeNames(kinds: tuple[str, ...] = ("handler", "listener")) -> frozenset[str]:
    """
    The type names a scheme word may be: GOST's (implemented or not) and
    every registered plugin's.
    """
    known: set[str] = set()
    for kind in kinds:
        known |= _GOST_NAMES[kind]
        known |= set(registry.implemented(kind))
    return frozenset(known)


_GOST_NAMES = {
    "handler": names.HANDLERS,
    "listener": names.LISTENERS,
    "connector": names.CONNECTORS,
    "dialer": names.DIALERS,
}


def firstField(value: str) -> tuple[str, str]:
    """
    C{(P, rest)}: the text before the first unescaped C{:} and after it
    (C{rest} is C{""} when there is no C{:}).
    """
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == ":":
            return value[:i], value[i + 1 :]
        i += 1
    return value, ""


def nearest(word: str, candidates: frozenset[str] | set[str], n: int = 3) -> list[str]:
    """
    The candidates closest to C{word} (difflib), best first.
    """
    return difflib.get_close_matches(word.lower(), sorted(candidates), n=n, cutoff=0.5)


def didYouMean(word: str, candidates: frozenset[str] | set[str], render: str = "{}", n: int = 3) -> str:
    close = nearest(word, candidates, n)
    if not close:
        return ""
    return " (did you mean " + " or ".join(render.format(c) for c in close) + "?)"


def classify(value: str) -> str:
    """
    L{URL} or L{DESCRIPTION} for one C{-L} value, by the parse rule.

    @raise ConfigError: for cases 3 and 5, with a one-line message.
    """
    text = value.strip()
    if not text:
        raise ConfigError("empty -L value")
    if "://" in text:
        return URL
    prefix, rest = firstField(text)
    if prefix == "" or text.startswith("["):
        return URL
    if prefix in serverPrefixes():
        return DESCRIPTION
    hasUserInfo = "@" in text.split("/", 1)[0].split("?", 1)[0]
    if not hasUserInfo and prefix.lower() in typeNames():
        raise ConfigError(
            f"{value}: {prefix!r} is a GOST type, not an endpoint: did you mean {prefix.lower()}://{_portHint(rest)}?"
        )
    address = _GOST_ADDRESS.match(text)
    if address and (hasUserInfo or _plausibleHost(address.group("host"))):
        return URL
    close = nearest(prefix, serverPrefixes() | typeNames())
    hints = " or ".join(f"{c}:{rest}" if c in serverPrefixes() else f"{c}://{_portHint(rest)}" for c in close)
    if address:
        message = f"{value}: unknown endpoint prefix {prefix!r}"
        message += f"; did you mean {hints}?" if hints else ""
        message += f" (a host name: write auto://{text})"
    else:
        message = f"{value}: neither a GOST address (host:port) nor an endpoint description"
        message += f"; did you mean {hints}?" if hints else f" (endpoint prefixes: {', '.join(sorted(serverPrefixes()))})"
    raise ConfigError(message)


def _portHint(rest: str) -> str:
    return ":" + rest if re.fullmatch(r"\d+(-\d+)?([/?].*)?", rest) else rest


@dataclass
class ListenSpec:
    """
    One C{--listen DESCRIPTION} and the per-service flags after it.
    """

    description: str
    handler: str = ""
    users: list[str] = field(default_factory=list)
    usersFile: str = ""
    targets: list[str] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)
    #: Why the value cannot be used (reported when the configuration is
    #: built, so that twistd prints one line rather than its usage text).
    error: str = ""

    def __str__(self) -> str:
        return self.description
