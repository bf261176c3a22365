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

Ours: C{private}, a matcher for loopback, private, link-local, CGNAT,
multicast, reserved and unspecified addresses, the empty host and
C{localhost} (to keep a public relay from reaching the host's own network);
a name is judged on every address it resolves to when the target guard
resolved it (L{gostrelay.guard}).

Every IP matcher sees the target's address in its canonical form: the
non-canonical IPv4 literals the C library accepts (C{127.1},
C{2130706433}, C{0x7f.1}, C{0177.0.0.1}, C{127.000.000.001}) and IPv4
addresses wrapped in IPv6 (mapped, 6to4, NAT64) are read as the IPv4
address they reach, so that no spelling of an address escapes a list.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gostrelay.config.model import BypassConfig, Config, ConfigError

#: RFC 6598 carrier-grade NAT space: not "private" to Python, private to us.
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")

_PORT = re.compile(r"^(?P<host>.*?):(?P<lo>\d+)(?:-(?P<hi>\d+))?$")

#: NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: What inet_aton(3) reads as an IPv4 address: one to four parts, each
#: decimal, octal (leading 0) or hexadecimal (0x).
_LOOSE_IPV4 = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def canonicalIP(host: str) -> IPAddress | None:
    """
    The address C{host} denotes when a C library dials it, or C{None} for
    a name: canonical literals, C{[v6]}, the loose IPv4 forms of
    inet_aton(3) (C{127.1}, C{2130706433}, C{0x7f.1}, C{0177.0.0.1}), and
    IPv4 wrapped in IPv6 (mapped, 6to4, NAT64) as that IPv4 address.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        if not _LOOSE_IPV4.match(text):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def isPrivateIP(ip: IPAddress) -> bool:
    """
    Whether C{ip} is one a public relay must not reach: loopback, private,
    link-local, CGNAT (RFC 6598), multicast, reserved, unspecified
    (0.0.0.0 and :: reach this host).
    """
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
        or (ip.version == 4 and ip in _SHARED_ADDRESS_SPACE)
    )


def isLoopbackName(host: str) -> bool:
    """
    The empty host (Go dials this machine) and C{localhost} with its
    subdomains (RFC 6761), which never leave the host.
    """
    name = host.strip().strip("[]").lower().rstrip(".")
    return name == "" or name == "localhost" or name.endswith(".localhost")


def isPrivateHost(host: str) -> bool:
    """
    Whether C{host} is private as written (no resolution): a loopback
    name, or a literal in any spelling that denotes a private address.
    """
    if isLoopbackName(host):
        return True
    ip = canonicalIP(host)
    return ip is not None and isPrivateIP(ip)


@dataclass(frozen=True)
class Matcher:
    kind: str
    value: Any
    ports: tuple[int, int] | None = None

    def matches(
        self, host: str, port: int, ip: IPAddress | None, resolved: Sequence[IPAddress] = ()
    ) -> bool:
        """
        Whether C{host:port} matches; C{ip} is C{host}'s canonical address
        (L{canonicalIP}), C{resolved} the addresses a name resolved to,
        which only C{private} consults.
        """
        if self.ports is not None and not (self.ports[0] <= port <= self.ports[1]):
            return False
        kind, value = self.kind, self.value
        if kind == "private":
            if ip is None and isLoopbackName(host):
                return True
            return (ip is not None and isPrivateIP(ip)) or any(isPrivateIP(r) for r in resolved)
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

    def _hit(self, host: str, port: int, resolved: Sequence[IPAddress]) -> bool:
        ip = canonicalIP(host)
        return any(m.matches(host, port, ip, resolved) for m in self.matchers)

    @property
    def judgesAddresses(self) -> bool:
        """
        Whether this list wants a name's resolved addresses (it has the
        C{private} matcher).
        """
        return any(m.kind == "private" for m in self.matchers)

    def contains(self, host: str, port: int, resolved: Sequence[IPAddress] = ()) -> bool:
        """
        Whether C{host:port} is bypassed (refused by a service, skipped by
        a hop).  C{resolved}: the addresses the name resolved to, when the
        caller resolved it (see L{Matcher.matches}).
        """
        hit = self._hit(host, port, resolved)
        return not hit if self.whitelist else hit


class BypassSet:
    """
    Several bypasses on one object: whitelists are AND-ed, blacklists OR-ed.
    """

    def __init__(self, bypasses: Iterable[Bypass]) -> None:
        self.bypasses = list(bypasses)

    def __bool__(self) -> bool:
        return bool(self.bypasses)

    @property
    def judgesAddresses(self) -> bool:
        return any(b.judgesAddresses for b in self.bypasses)

    def contains(self, host: str, port: int, resolved: Sequence[IPAddress] = ()) -> bool:
        return any(b.contains(host, port, resolved) for b in self.bypasses)


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
