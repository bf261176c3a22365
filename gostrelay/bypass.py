"""
Bypass lists (spec-relay.md 7.3): which targets a service refuses, or a hop
skips.

Matchers, as GOST's: an IP (C{192.0.2.1}), a CIDR (C{10.0.0.0/8}), an IP
range (C{192.0.2.1-192.0.2.9}), an exact name (C{example.com}), a dotted
suffix (C{.example.com}: the name and every subdomain), a glob
(C{*.example.com}); each optionally followed by C{:port} or
C{:port-port}.  Names match case-insensitively.  A whitelist (C{~} on the
command line, C{whitelist: true} in YAML) inverts the list: then what does
I{not} match is bypassed.  Several bypasses on one object: whitelists must
all pass, blacklists any one refuses.

Ours: C{private}, a matcher for loopback, private, link-local and
unspecified addresses (to keep a public relay from reaching the host's own
network).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gostrelay.config.model import BypassConfig, Config, ConfigError

#: RFC 6598 carrier-grade NAT space: not "private" to Python, private to us.
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")

_PORT = re.compile(r"^(?P<host>.*?):(?P<lo>\d+)(?:-(?P<hi>\d+))?$")


@dataclass(frozen=True)
class Matcher:
    kind: str
    value: Any
    ports: tuple[int, int] | None = None

    def matches(self, host: str, port: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if self.ports is not None and not (self.ports[0] <= port <= self.ports[1]):
            return False
        kind, value = self.kind, self.value
        if kind == "private":
            return ip is not None and (
                ip.is_private
                or ip.is_loopback
                or ip.is_link_local
                or ip.is_unspecified
                or ip.is_reserved
                or ip.is_multicast
                or (ip.version == 4 and ip in _SHARED_ADDRESS_SPACE)
            )
        if kind == "ip":
            return ip is not None and ip == value
        if kind == "cidr":
            return ip is not None and ip.version == value.version and ip in value
        if kind == "range":
            first, last = value
            return ip is not None and ip.version == first.version and first <= ip <= last
        name = host.lower().rstrip(".")
        if kind == "name":
            return name == value
        if kind == "suffix":
            return name == value or name.endswith("." + str(value))
        if kind == "glob":
            return fnmatch.fnmatchcase(name, str(value))
        return False


def parseMatcher(text: str) -> Matcher:
    text = text.strip()
    ports = None
    bare = text
    if not text.startswith("[") and text.count(":") == 1 or text.startswith("[") and "]:" in text:
        m = _PORT.match(text)
        if m is not None:
            lo = int(m.group("lo"))
            hi = int(m.group("hi") or lo)
            ports = (min(lo, hi), max(lo, hi))
            bare = m.group("host")
    bare = bare.strip("[]")
    if bare.lower() == "private":
        return Matcher("private", None, ports)
    try:
        return Matcher("ip", ipaddress.ip_address(bare), ports)
    except ValueError:
        pass
    if "/" in bare:
        try:
            return Matcher("cidr", ipaddress.ip_network(bare, strict=False), ports)
        except ValueError:
            raise ConfigError(f"bypass matcher {text!r}: not a CIDR") from None
    if "-" in bare:
        first, _, last = bare.partition("-")
        try:
            return Matcher("range", (ipaddress.ip_address(first), ipaddress.ip_address(last)), ports)
        except ValueError:
            pass
    name = bare.lower().rstrip(".")
    if name.startswith("."):
        return Matcher("suffix", name[1:], ports)
    if any(c in name for c in "*?["):
        return Matcher("glob", name, ports)
    if not name:
        raise ConfigError(f"bypass matcher {text!r} is empty")
    return Matcher("name", name, ports)


class Bypass:
    """
    One bypass list.
    """

    def __init__(self, matchers: Sequence[Matcher], whitelist: bool = False, name: str = "") -> None:
        self.matchers = list(matchers)
        self.whitelist = whitelist
        self.name = name

    @classmethod
    def fromConfig(cls, config: BypassConfig) -> Bypass:
        return cls([parseMatcher(m) for m in config.matchers], config.whitelist, config.name)

    def _hit(self, host: str, port: int) -> bool:
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
            ip = ip.ipv4_mapped  # type: ignore[union-attr]
        return any(m.matches(host, port, ip) for m in self.matchers)

    def contains(self, host: str, port: int) -> bool:
        """
        Whether C{host:port} is bypassed (refused by a service, skipped by
        a hop).
        """
        hit = self._hit(host, port)
        return not hit if self.whitelist else hit


class BypassSet:
    """
    Several bypasses on one object: whitelists are AND-ed, blacklists OR-ed.
    """

    def __init__(self, bypasses: Iterable[Bypass]) -> None:
        self.bypasses = list(bypasses)

    def __bool__(self) -> bool:
        return bool(self.bypasses)

    def contains(self, host: str, port: int) -> bool:
        return any(b.contains(host, port) for b in self.bypasses)


def bypassesFor(names: Iterable[str], config: Config, where: str, extra: Iterable[Bypass] = ()) -> BypassSet:
    """
    The bypasses an object names (C{bypass} and C{bypasses}).
    """
    found = list(extra)
    for name in names:
        if not name:
            continue
        for bypass in config.bypasses:
            if bypass.name == name:
                found.append(Bypass.fromConfig(bypass))
                break
        else:
            raise ConfigError(f"{where}: bypass {name!r} is not defined")
    return BypassSet(found)
