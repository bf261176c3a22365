"""
Outgoing connections of a service: through its chain when it has one,
directly otherwise (spec-relay.md 7.1).

A router turns C{(network, "host:port")} into a connected protocol, with the
service's C{dialTimeout} on every attempt and the handler's C{retries}.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure

from gostrelay.wire.address import AddressError, splitHostPort

DEFAULT_DIAL_TIMEOUT = 15.0


class DialError(Exception):
    """
    A target could not be reached; C{str()} says why, for the log line.
    """


class UnsupportedNetwork(DialError):
    pass


class HopFailed(DialError, error.ConnectError):
    """
    A node of a chain failed: its relay server could not be reached
    (refused, timed out, a TLS or WebSocket handshake failed), or it did not
    answer, or it refused to reach the next node.  The message names the
    node, not the target, so that an unreachable relay server is never
    blamed on the target.

    @ivar server: the node's address, with its hop (C{"127.0.0.1:8420
        (hop 1)"}).
    @ivar how: what went wrong (C{"connection refused"}, C{"TLS: ..."}).
    @ivar status: the relay status when the node answered one, else C{None}.
    @ivar culprit: the index in the route of the node whose fail counter
        this counts against, when known.
    """

    def __init__(self, server: str, how: str, status: int | None = None, culprit: int | None = None) -> None:
        self.message = f"relay server {server}: {how}"
        error.ConnectError.__init__(self, string=self.message)
        self.server = server
        self.how = how
        self.status = status
        self.culprit = culprit

    def __str__(self) -> str:
        return self.message


def directEndpoint(reactor: Any, address: str, timeout: float = DEFAULT_DIAL_TIMEOUT) -> IStreamClientEndpoint:
    """
    An endpoint dialing C{"host:port"} from this machine.  IP literals skip
    name resolution; an empty host is this machine (Go's meaning), reached
    on 127.0.0.1.
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
    version, host, port = parsed
    if version == 4:
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host.encode("idna") if host.isascii() else host, port, timeout=timeout)


#: Targets already parsed by L{directEndpoint} (a forward service, a relay
#: server in forward mode and a chain's first hop dial the same ones on
#: every connection).
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

    def endpoint(self, network: str, address: str, origin: Any = None) -> IStreamClientEndpoint:
        if network not in ("tcp", "tcp4", "tcp6"):
            raise UnsupportedNetwork(f"network {network!r} is not supported here")
        if self.route is not None:
            if origin is not None and getattr(self.route, "sendsProxyHeaders", False):
                return self.route.endpoint(network, address, self.dialTimeout, origin=origin)  # type: ignore[call-arg]
            return self.route.endpoint(network, address, self.dialTimeout)
        return directEndpoint(self.reactor, address, self.dialTimeout)

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
            return _Dial(self, network, address, address, False, factory, origin).start()
        return self._checked(address).addCallback(
            lambda checked: _Dial(self, network, address, checked[0], checked[1], factory, origin).start()
        )

    @defer.inlineCallbacks
    def datagram(self, address: str, receiver: Any):  # type: ignore[no-untyped-def]
        """
        A datagram channel to C{address}: through the chain, a relay UDP
        CONNECT stream carrying length-prefixed frames; directly, a UDP
        socket connected to the target.

        @return: a L{Deferred} firing with an L{IDatagramChannel}, or failing
            with L{DialError}.
        """
        from gostrelay.datagram import ChannelFactory, LengthFramedChannel, connectUDP

        checked, _direct = yield self._checked(address)
        last: Exception | None = None
        for _attempt in range(self.retries + 1):
            d: defer.Deferred[Any]
            if self.chained(address):
                channel = LengthFramedChannel(receiver, address)
                d = self.route.endpoint("udp", address, self.dialTimeout).connect(ChannelFactory(channel))  # type: ignore[union-attr]
            else:
                d = connectUDP(self.reactor, receiver, checked)
            timedOut: list[bool] = []
            timer = self.reactor.callLater(self.dialTimeout, _expire, d, timedOut)
            try:
                result = yield d
            except (defer.CancelledError, error.ConnectingCancelledError):
                if not timedOut:
                    raise defer.CancelledError() from None
                last = DialError(f"dial udp {address}: timed out after {self.dialTimeout:g}s")
            except HopFailed as e:
                last = e
            except error.ConnectError as e:
                last = DialError(f"dial udp {address}: {_reason(e)}")
            except DialError as e:
                last = e
            except Exception as e:  # noqa: BLE001 - any dial failure is a dial error
                last = DialError(f"dial udp {address}: {e}")
            else:
                return channel if self.route is not None else result
            finally:
                if timer.active():
                    timer.cancel()
        assert last is not None
        raise last

    def association(self, receiver: Any) -> defer.Deferred[Any]:
        """
        A datagram channel to any destination (SOCKS5 UDP ASSOCIATE):
        through the chain, a relay UDP association (a UDP BIND of
        0.0.0.0:0 on the last hop, carrying tunnel datagrams; the server
        needs bind=true, as in GOST); directly, an unconnected UDP socket
        that resolves names before sending.
        """
        from gostrelay.datagram import (
            ChannelFactory,
            ResolvingChannel,
            TunnelFramedChannel,
            UDPSocketChannel,
            listenUDP,
        )

        if self.route is not None:
            bindEndpoint = getattr(self.route, "bindEndpoint", None)
            if bindEndpoint is None:
                return defer.fail(DialError("this route cannot carry a UDP association"))
            channel = TunnelFramedChannel(receiver)
            try:
                d = bindEndpoint("udp", "", self.dialTimeout).connect(ChannelFactory(channel))
            except Exception as e:  # noqa: BLE001
                return defer.fail(DialError(f"UDP association: {e}"))
            timedOut: list[bool] = []
            timer = self.reactor.callLater(self.dialTimeout, _expire, d, timedOut)

            def done(result: Any) -> Any:
                if timer.active():
                    timer.cancel()
                return result

            def failed(f: Any) -> Any:
                if f.check(defer.CancelledError) and timedOut:
                    raise DialError(f"UDP association: timed out after {self.dialTimeout:g}s")
                if f.check(HopFailed):
                    return f
                if f.check(error.ConnectError) and getattr(f.value, "status", None) is None:
                    raise DialError(f"UDP association: {_reason(f.value)}")
                return f

            return d.addBoth(done).addCallbacks(lambda _: channel, failed)
        socketChannel = UDPSocketChannel(receiver)
        try:
            listenUDP(self.reactor, socketChannel)
        except Exception as e:  # noqa: BLE001
            return defer.fail(DialError(f"UDP association: {e}"))
        return defer.succeed(ResolvingChannel(self.reactor, socketChannel))


class _Dial:
    """
    One L{Router.connect}: up to C{retries + 1} attempts, each bounded by
    the dial timeout.
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
        self.router = router
        self.origin = origin
        self.network = network
        self.address = address
        self.checked = checked
        self.direct = direct
        self.factory = factory
        self.left = router.retries + 1
        self.attempt: defer.Deferred[Any] | None = None
        self.timer: Any = None
        self.timedOut = False
        self.endpoint: Any = None
        self.result: defer.Deferred[Any] = defer.Deferred(lambda _: self._cancel())

    def start(self) -> defer.Deferred[Any]:
        try:
            self._next()
        except Exception:  # noqa: BLE001 - e.g. a chain refusing the target: the caller's failure
            self.result.errback()
        return self.result

    def _next(self) -> None:
        router = self.router
        self.left -= 1
        if self.direct or router.route is None:
            endpoint = directEndpoint(router.reactor, self.checked, router.dialTimeout)
        else:
            endpoint = router.endpoint(self.network, self.address, self.origin)
        self.timedOut = False
        self.endpoint = endpoint
        d = self.attempt = endpoint.connect(self.factory)
        self.timer = router.reactor.callLater(router.dialTimeout, self._expire, d)
        d.addCallbacks(self._connected, self._failed)

    def _expire(self, d: defer.Deferred[Any]) -> None:
        self.timer = None
        self.timedOut = True
        d.cancel()

    def _stopTimer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _cancel(self) -> None:
        self._stopTimer()
        if self.attempt is not None:
            attempt, self.attempt = self.attempt, None
            attempt.cancel()

    def _connected(self, protocol: Any) -> None:
        self.attempt = None
        self._stopTimer()
        if not self.result.called:
            self.result.callback(protocol)

    def _failed(self, f: Failure) -> None:
        self._stopTimer()
        if self.attempt is None or self.result.called:
            return  # cancelled by the caller
        self.attempt = None
        address, timeout = self.address, self.router.dialTimeout
        e = f.value
        if isinstance(e, (defer.CancelledError, error.ConnectingCancelledError)):
            if not self.timedOut:
                self.result.errback(defer.CancelledError())
                return
            stalled = getattr(self.endpoint, "stalled", None)
            where = stalled() if stalled is not None else None
            if where is not None:
                # A chain says which relay server kept us waiting.
                last: Exception = HopFailed(where, f"timed out after {timeout:g}s (dialing {address})")
            else:
                last = DialError(f"dial {address}: timed out after {timeout:g}s")
        elif isinstance(e, HopFailed):
            last = e
        elif isinstance(e, error.ConnectError):
            if getattr(e, "status", None) is not None:
                self.result.errback(f)  # a relay server's refusal: callers map its status
                return
            last = DialError(f"dial {address}: {_reason(e)}")
        elif isinstance(e, DialError):
            last = e
        else:
            last = DialError(f"dial {address}: {e}")
        if self.left <= 0:
            self.result.errback(last)
            return
        try:
            self._next()
        except Exception:  # noqa: BLE001
            self.result.errback()


def _expire(d: defer.Deferred[Any], timedOut: list[bool]) -> None:
    """
    The dial timeout: cancel the attempt, remembering it was us (a
    cancellation from the caller stops retrying; a timeout does not).
    """
    timedOut.append(True)
    d.cancel()


def _reason(e: error.ConnectError) -> str:
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, error.DNSLookupError):
        return "name not resolved"
    if isinstance(e, (error.TimeoutError, error.TCPTimedOutError)):
        return "timed out"
    return e.osError if getattr(e, "osError", None) else (str(e.args[0]) if e.args else e.__class__.__name__)
