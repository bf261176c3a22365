"""
The target guard: C{denyPrivate} and the address-judging part of a
service's bypass (the C{private} matcher), checked before anything is
dialed or sent.

The rule (docs/reliability.md, "SSRF"): resolve first, check every address
the target resolves to, and connect only to an address that was checked;
so that no name, no spelling of a literal (C{127.1}, C{2130706433},
C{0x7f.1}, C{::ffff:127.0.0.1}), no empty host and no DNS answer that
changes between the check and the dial (rebinding) reaches a private
address.

With a chain the last hop's server resolves the target, not us: a literal
is checked here, a name is looked up here and refused if any address it has
here is private, and a name we cannot resolve goes on; the last relay
server's own C{denyPrivate} decides what it resolves to there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from zope.interface import implementer

from gostrelay.bypass import BypassSet, IPAddress, canonicalIP, isLoopbackName, isPrivateIP
from gostrelay.errors import TargetRefused
from gostrelay.wire.address import AddressError, joinHostPort, splitHostPort


@implementer(IResolutionReceiver)
class _Collector:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: defer.Deferred[list[str]] = defer.Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        host = getattr(address, "host", None)
        if host is not None and host not in self.addresses:
            self.addresses.append(host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


def hostNameForResolver(host: str) -> str:
    """
    C{host} as the resolver takes it (IDNA), or L{error.DNSLookupError} at
    once for what is not a host name (an empty label as in C{a..b}, a label
    over 63 characters, over 253 in all, undecodable bytes): getaddrinfo
    would raise those inside Twisted's resolver thread, where nothing
    catches them and the lookup never ends.
    """
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise error.DNSLookupError(f"{host!r} is not a host name ({e})") from None
    if not name or len(name.rstrip(".")) > 253:
        raise error.DNSLookupError(f"{host!r} is not a host name")
    return name


async def resolveFirst(reactor: Any, host: str) -> str:
    """
    The address of C{host} as C{reactor.resolve} gives it (the empty host
    is 127.0.0.1, an IP literal itself); L{error.DNSLookupError} when there
    is none, and at once when C{host} is not a host name.
    """
    if host == "":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return await reactor.resolve(hostNameForResolver(host))  # type: ignore[no-any-return]


def resolveAll(reactor: Any, host: str, port: int = 0) -> defer.Deferred[list[str]]:
    """
    Every address C{host} resolves to (the reactor's name resolver, as
    L{HostnameEndpoint} uses), in the resolver's order; fails with
    L{error.DNSLookupError} when there is none.
    """
    try:
        name = hostNameForResolver(host)
    except error.DNSLookupError as e:
        return defer.fail(e)
    collector = _Collector()
    reactor.nameResolver.resolveHostName(collector, name, port)

    def check(addresses: list[str]) -> list[str]:
        if not addresses:
            raise error.DNSLookupError(host)
        return addresses

    return collector.done.addCallback(check)


class TargetGuard:
    """
    The checks of one handler.

    @param denyPrivate: refuse targets on private addresses (handler
        option C{denyPrivate}).
    @param bypass: the service's bypasses; only those with the C{private}
        matcher make the guard resolve (the rest is judged on the name by
        the handler, as GOST does).
    """

    def __init__(self, reactor: Any, denyPrivate: bool, bypass: BypassSet | None = None) -> None:
        self.reactor = reactor
        self.denyPrivate = denyPrivate
        self.bypass = bypass if bypass is not None and bypass.judgesAddresses else None

    @classmethod
    def forHandler(cls, reactor: Any, denyPrivate: bool, bypass: BypassSet | None) -> TargetGuard | None:
        """
        A guard when there is anything to guard, else C{None} (no cost).
        """
        guard = cls(reactor, denyPrivate, bypass)
        return guard if guard.denyPrivate or guard.bypass is not None else None

    def _judge(self, host: str, port: int, addresses: Sequence[IPAddress]) -> None:
        if self.denyPrivate:
            if isLoopbackName(host) and canonicalIP(host) is None:
                raise TargetRefused("target is a private address (denyPrivate)")
            for ip in addresses:
                if isPrivateIP(ip):
                    raise TargetRefused(f"target is a private address (denyPrivate): {ip}")
        if self.bypass is not None and self.bypass.contains(host, port, addresses):
            raise TargetRefused("target matches the service bypass")

    def refusesSource(self, host: str, port: int) -> bool:
        """
        Whether a datagram from C{host:port} (an address, never a name) is
        dropped: a reply from where we would not send.
        """
        try:
            self.checkLiteral(host, port)
        except TargetRefused:
            return True
        return False

    def checkLiteral(self, host: str, port: int) -> IPAddress | None:
        """
        Judge C{host} as written (no resolution): its canonical address
        when it is a literal (refused or not), else C{None}.

        @raise TargetRefused: a private literal or loopback name.
        """
        ip = canonicalIP(host)
        self._judge(host, port, [ip] if ip is not None else [])
        return ip

    @defer.inlineCallbacks
    def resolve(self, address: str, chained: bool = False):  # type: ignore[no-untyped-def]
        """
        Check C{address} (C{"host:port"}).

        @param chained: the target is reached through a chain (its last
            hop resolves it).
        @return: a L{Deferred} firing with the address to dial: directly,
            C{"ip:port"} of a checked address (a name's first address, as
            the resolver orders them; the empty host is 127.0.0.1); through
            a chain, C{address} unchanged.  Fails with L{TargetRefused}, or
            (directly) L{error.DNSLookupError}.
        """
        try:
            host, port = splitHostPort(address)
        except AddressError:
            return address  # the dial reports it
        ip = self.checkLiteral(host, port)
        if ip is not None:
            return address if chained else joinHostPort(str(ip), port)
        if host == "":
            return address if chained else joinHostPort("127.0.0.1", port)
        try:
            found = yield resolveAll(self.reactor, host, port)
        except error.DNSLookupError:
            if chained:
                return address  # the last hop's server decides
            raise
        addresses = [a for a in (canonicalIP(f) for f in found) if a is not None]
        self._judge(host, port, addresses)
        if chained:
            return address
        return joinHostPort(found[0], port)
