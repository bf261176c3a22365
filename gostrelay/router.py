"""
Outgoing connections of a service: through its chain when it has one,
directly otherwise (spec-relay.md 7.1).

A router turns C{(network, "host:port")} into a connected protocol (or a
datagram channel), with the service's C{dialTimeout} on every attempt and
the handler's C{retries}: one loop (L{_Dial}) for streams, datagrams and UDP
associations.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable
from typing import Protocol as TypingProtocol

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure

from gostrelay.datagram import (
    ChannelFactory,
    LengthFramedChannel,
    ResolvingChannel,
    TunnelFramedChannel,
    UDPSocketChannel,
    connectUDP,
    listenUDP,
)
from gostrelay.errors import DialError, HopFailed, RelayRefused, UnsupportedNetwork, describeConnectError
from gostrelay.wire.address import AddressError, splitHostPort

DEFAULT_DIAL_TIMEOUT = 15.0


def directEndpoint(reactor: Any, address: str, timeout: float | None = DEFAULT_DIAL_TIMEOUT) -> IStreamClientEndpoint:
    """
    An endpoint dialing C{"host:port"} from this machine.  IP literals skip
    name resolution; an empty host is this machine (Go's meaning), reached
    on 127.0.0.1.

    @param timeout: how long the TCP connection may take; C{None} when the
        caller bounds the attempt itself (L{Router}: no second timer).
    """
    version, host, port = parseTarget(address)
    if version == 4:
        # None reaches Twisted's connector, which then sets no timer.
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)  # type: ignore[arg-type]
    if version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(
        reactor, host.encode("idna") if host.isascii() else host, port,
        timeout=DEFAULT_DIAL_TIMEOUT if timeout is None else timeout,
    )


def parseTarget(address: str) -> tuple[int, str, int]:
    """
    C{"host:port"} as C{(IP version or 0 for a name, host, port)}, parsed
    once per target (a forward service, a relay server in forward mode and
    a chain's first hop dial the same ones on every connection).

    @raise DialError: when C{address} is not C{host:port}.
    """
    parsed = _parsedTargets.get(address)
    if parsed is None:
        try:
            host, port = splitHostPort(address)
        except AddressError as e:
            raise DialError(str(e)) from None
        if host == "":
            parsed = (4, "127.0.0.1", port)
        else:
            try:
                parsed = (ipaddress.ip_address(host).version, host, port)
            except ValueError:
                parsed = (0, host, port)
        if len(_parsedTargets) >= 1024:
            _parsedTargets.clear()
        _parsedTargets[address] = parsed
    return parsed


#: Targets already parsed by L{parseTarget}.
_parsedTargets: dict[str, tuple[int, str, int]] = {}


class IRoute(TypingProtocol):
    def endpoint(self, network: str, address: str, timeout: float) -> IStreamClientEndpoint: ...


class Router:
    """
    Dials targets for one handler.

    @param route: an object with C{endpoint(network, address, timeout)}
        giving the endpoint to use (a chain); C{None} dials directly.
    """

    def __init__(
        self,
        reactor: Any,
        route: IRoute | None = None,
        dialTimeout: float = DEFAULT_DIAL_TIMEOUT,
        retries: int = 0,
        guard: Any = None,
    ) -> None:
        self.reactor = reactor
        self.route = route
        self.dialTimeout = dialTimeout if dialTimeout > 0 else DEFAULT_DIAL_TIMEOUT
        self.retries = max(0, retries)
        #: A L{gostrelay.guard.TargetGuard} (denyPrivate), set by the handler.
        self.guard = guard
        #: The route's endpoints leave the attempt's timeout to us (a chain):
        #: no second timer per connection in Twisted's connector.
        self._routeOptions: dict[str, Any] = {"timedByCaller": True} if getattr(route, "takesTimedByCaller", False) else {}

    @property
    def wantsOrigin(self) -> bool:
        """
        Whether L{connect} uses C{origin} (the route sends PROXY headers):
        callers look the client's addresses up only then (the local
        address is a C{getsockname} call per connection).
        """
        return self.route is not None and bool(getattr(self.route, "sendsProxyHeaders", False))

    def chained(self, address: str) -> bool:
        """
        Whether C{address} is reached through the chain (not directly).
        """
        if self.route is None:
            return False
        hops = getattr(self.route, "hopsFor", None)
        return hops is None or hops(address) > 0

    @defer.inlineCallbacks
    def _checked(self, address: str):  # type: ignore[no-untyped-def]
        """
        C{(address to dial, direct)} after the guard: a direct dial goes to
        the checked address only (gostrelay.guard).
        """
        if self.guard is None:
            return address, False
        chained = self.chained(address)
        try:
            checked = yield self.guard.resolve(address, chained)
        except error.DNSLookupError:
            raise DialError(f"dial {address}: name not resolved") from None
        return checked, not chained

    def endpoint(self, network: str, address: str, origin: Any = None, timedByCaller: bool = False) -> IStreamClientEndpoint:
        """
        The endpoint of one attempt to reach C{address}.

        @param timedByCaller: the caller bounds the attempt with the dial
            timeout itself (L{_StreamDial}), so the TCP connection needs no
            timer of its own.
        """
        if network not in ("tcp", "tcp4", "tcp6"):
            raise UnsupportedNetwork(f"network {network!r} is not supported here")
        options = self._routeOptions if timedByCaller else {}
        if self.route is not None:
            if origin is not None and getattr(self.route, "sendsProxyHeaders", False):
                return self.route.endpoint(network, address, self.dialTimeout, origin=origin, **options)  # type: ignore[call-arg]
            return self.route.endpoint(network, address, self.dialTimeout, **options)
        return directEndpoint(self.reactor, address, None if timedByCaller else self.dialTimeout)

    def connect(self, network: str, address: str, factory: IProtocolFactory, origin: Any = None) -> defer.Deferred[Any]:
        """
        Connect C{factory}'s protocol to C{address}.  C{origin}: the
        client's C{(peer, host)} addresses, for chain nodes that get a
        PROXY header.

        @return: a L{Deferred} firing with the connected protocol, or
            failing with L{DialError} naming the reason.
        """
        if network not in ("tcp", "tcp4", "tcp6"):
            return defer.fail(UnsupportedNetwork(f"network {network!r} is not supported here"))
        if self.guard is None:
            # No generator, no extra Deferred: this runs once per connection.
            return _StreamDial(self, network, address, address, False, factory, origin).start()
        return self._checked(address).addCallback(
            lambda checked: _StreamDial(self, network, address, checked[0], checked[1], factory, origin).start()
        )

    def datagram(self, address: str, receiver: Any) -> defer.Deferred[Any]:
        """
        A datagram channel to C{address}: through the chain, a relay UDP
        CONNECT stream carrying length-prefixed frames; directly, a UDP
        socket connected to the target.

        @return: a L{Deferred} firing with an L{IDatagramChannel}, or failing
            with L{DialError}.
        """
        return self._checked(address).addCallback(
            lambda checked: _DatagramDial(self, address, checked[0], receiver).start()
        )

    def association(self, receiver: Any) -> defer.Deferred[Any]:
        """
        A datagram channel to any destination (SOCKS5 UDP ASSOCIATE):
        through the chain, a relay UDP association (a UDP BIND of
        0.0.0.0:0 on the last hop, carrying tunnel datagrams; the server
        needs bind=true, as in GOST); directly, an unconnected UDP socket
        that resolves names before sending.
        """
        if self.route is not None:
            bindEndpoint = getattr(self.route, "bindEndpoint", None)
            if bindEndpoint is None:
                return defer.fail(DialError("this route cannot carry a UDP association"))
            return _AssociationDial(self, bindEndpoint, receiver).start()
        socketChannel = UDPSocketChannel(receiver)
        try:
            listenUDP(self.reactor, socketChannel)
        except Exception as e:  # noqa: BLE001
            return defer.fail(DialError(f"UDP association: {e}"))
        return defer.succeed(ResolvingChannel(self.reactor, socketChannel))


class _Dial:
    """
    The one retry loop of a router: up to C{attempts} attempts, each bounded
    by the dial timeout.  A failed attempt becomes a L{DialError} whose
    message starts with L{what} (a chain node's failure stays the
    L{HopFailed} naming it) and is tried again while attempts are left.
    A relay server's refusal (L{RelayRefused}, when L{refusalIsAnswer}) and
    a cancellation end the dial at once: the server answered, the caller
    gave up.  Subclasses make one attempt in L{_attempt}.
    """

    #: The start of failure messages (C{"dial 10.0.0.1:80"}).
    what = ""
    #: Whether a relay server's refusal reaches the caller as it is (whose
    #: status it maps to an HTTP or SOCKS answer) rather than as a retried
    #: L{DialError}.
    refusalIsAnswer = True

    def __init__(self, router: Router, attempts: int) -> None:
        self.router = router
        self.left = attempts
        self.attempt: defer.Deferred[Any] | None = None
        #: The attempt's dial timeout (one timer, not L{Deferred.addTimeout}'s
        #: timer and callbacks), and whether it fired.
        self.timer: Any = None
        self.timedOut = False
        self.result: defer.Deferred[Any] = defer.Deferred(lambda _: self._cancel())

    def _attempt(self) -> defer.Deferred[Any]:
        raise NotImplementedError()

    def start(self) -> defer.Deferred[Any]:
        self._next()
        return self.result

    def _next(self) -> None:
        self.left -= 1
        try:
            d = self._attempt()
        except Exception:  # noqa: BLE001 - e.g. a chain refusing the target: the caller's failure
            self.result.errback()
            return
        self.attempt = d
        self.timedOut = False
        self.timer = self.router.reactor.callLater(self.router.dialTimeout, self._timeUp, d)
        d.addCallbacks(self._connected, self._failed)

    def _timeUp(self, attempt: defer.Deferred[Any]) -> None:
        """
        The attempt outlived the dial timeout: cancel it; its cancellation
        is then a timeout (a cancellation by the caller stays one).
        """
        self.timer = None
        self.timedOut = True
        attempt.cancel()

    def _stopTimer(self) -> None:
        if self.timer is not None:
            timer, self.timer = self.timer, None
            timer.cancel()

    def _cancel(self) -> None:
        self._stopTimer()
        if self.attempt is not None:
            attempt, self.attempt = self.attempt, None
            attempt.cancel()

    def _connected(self, result: Any) -> None:
        self._stopTimer()
        self.attempt = None
        if not self.result.called:
            self.result.callback(result)

    def _failed(self, f: Failure) -> None:
        self._stopTimer()
        if self.attempt is None or self.result.called:
            return  # cancelled by the caller
        self.attempt = None
        e = f.value
        timedOut = self.timedOut and isinstance(e, (defer.CancelledError, error.ConnectingCancelledError))
        if isinstance(e, (defer.CancelledError, error.ConnectingCancelledError)) and not timedOut:
            self.result.errback(defer.CancelledError())
            return
        if isinstance(e, RelayRefused) and self.refusalIsAnswer:
            self.result.errback(f)
            return
        if timedOut:
            failure: DialError = self._timeoutError()
        elif isinstance(e, DialError):
            failure = e
        elif isinstance(e, error.ConnectError):
            failure = DialError(f"{self.what}: {describeConnectError(e)}")
        else:
            failure = DialError(f"{self.what}: {e}")
        if self.left <= 0:
            self.result.errback(failure)
            return
        self._next()

    def _timeoutError(self) -> DialError:
        return DialError(f"{self.what}: timed out after {self.router.dialTimeout:g}s")


class _StreamDial(_Dial):
    """
    One L{Router.connect}: to the checked address directly, or through the
    route.
    """

    def __init__(
        self,
        router: Router,
        network: str,
        address: str,
        checked: str,
        direct: bool,
        factory: IProtocolFactory,
        origin: Any = None,
    ) -> None:
        super().__init__(router, router.retries + 1)
        self.origin = origin
        self.network = network
        self.address = address
        self.checked = checked
        self.direct = direct
        self.factory = factory
        self.endpoint: Any = None

    @property
    def what(self) -> str:  # type: ignore[override]
        # Formatted only when a failure is reported.
        return f"dial {self.address}"

    def _attempt(self) -> defer.Deferred[Any]:
        router = self.router
        if self.direct or router.route is None:
            # Our own timeout (L{_Dial._next}) bounds the attempt.
            self.endpoint = directEndpoint(router.reactor, self.checked, None)
        else:
            self.endpoint = router.endpoint(self.network, self.address, self.origin, timedByCaller=True)
        return self.endpoint.connect(self.factory)

    def _timeoutError(self) -> DialError:
        stalled = getattr(self.endpoint, "stalled", None)
        where = stalled() if stalled is not None else None
        if where is not None:
            # A chain says which relay server kept us waiting.
            return HopFailed(where, f"timed out after {self.router.dialTimeout:g}s (dialing {self.address})")
        return super()._timeoutError()


class _DatagramDial(_Dial):
    """
    One L{Router.datagram}.  Its callers map no relay status, so a relay
    server's refusal is one more reason the target was not reached.
    """

    refusalIsAnswer = False

    def __init__(self, router: Router, address: str, checked: str, receiver: Any) -> None:
        super().__init__(router, router.retries + 1)
        self.what = f"dial udp {address}"
        self.address = address
        self.checked = checked
        self.receiver = receiver

    def _attempt(self) -> defer.Deferred[Any]:
        router = self.router
        if router.route is None or not router.chained(self.address):
            return connectUDP(router.reactor, self.receiver, self.checked)
        channel = LengthFramedChannel(self.receiver, self.address)
        d = router.route.endpoint("udp", self.address, router.dialTimeout).connect(ChannelFactory(channel))
        return d.addCallback(lambda _: channel)


class _AssociationDial(_Dial):
    """
    One L{Router.association} through a route: a single attempt.
    """

    what = "UDP association"

    def __init__(self, router: Router, bindEndpoint: Callable[..., IStreamClientEndpoint], receiver: Any) -> None:
        super().__init__(router, 1)
        self.bindEndpoint = bindEndpoint
        self.receiver = receiver

    def _attempt(self) -> defer.Deferred[Any]:
        channel = TunnelFramedChannel(self.receiver)
        try:
            d = self.bindEndpoint("udp", "", self.router.dialTimeout).connect(ChannelFactory(channel))
        except Exception as e:  # noqa: BLE001
            raise DialError(f"UDP association: {e}") from None
        return d.addCallback(lambda _: channel)

