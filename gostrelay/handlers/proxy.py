"""
The local proxy entry: handlers C{auto}, C{http}, C{socks5} (alias
C{socks}) and C{socks4} (alias C{socks4a}) (spec-relay.md section 11).  C{denyPrivate} (ours) refuses private
targets as on the relay handler (L{gostrelay.guard}).

C{-L :8080} serves all three on one port: the first byte decides (0x04
SOCKS4, 0x05 SOCKS5, 0x16 a TLS ClientHello, forwarded by its server name
to port 443 as GOST's C{sni} handler does (L{gostrelay.wire.tlshello};
not on an entry with users: a ClientHello carries no credentials),
anything else HTTP).  The C{sni} handler is the same entry with TLS and
HTTP only.  Every target is reached
through the service's router, so through its chain when it has one.

Codecs are sans-IO (L{gostrelay.wire.socks}, L{gostrelay.wire.httpproxy}),
and so is the SOCKS5 negotiation (L{gostrelay.wire.socks.Socks5ServerNegotiation}:
greeting, method, username/password, request, reply); this module drives
them and sits between them, the router and the pipe.
Malformed requests get the protocol's own error reply and a close.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs
from gostrelay.config.model import ServiceConfig
from gostrelay.errors import HopFailed, RelayRefused, relayStatus
from gostrelay.handlers.base import DEFAULT_READ_TIMEOUT, PipingProtocol, StreamHandler
from gostrelay.handlers.socksudp import UDPAssociation
from gostrelay.interfaces import IHandler
from gostrelay.pipe import A, B, Pipe, PipeProtocol, PipeSideFactory
from gostrelay.wire import httpproxy, socks, tlshello
from gostrelay.wire.address import joinHostPort, splitHostPort
from gostrelay.wire.relay import Status, statusText

__all__ = ["DEFAULT_READ_TIMEOUT", "MAX_REQUEST_BUFFER", "ProxyEntryHandler", "ProxyEntryProtocol"]

#: The most bytes we hold before a request is complete (an HTTP head is
#: capped by its parser at 64 KiB; SOCKS requests are far smaller).
MAX_REQUEST_BUFFER = 128 * 1024

HTTP = "http"
SOCKS4 = "socks4"
SOCKS5 = "socks5"
SNI = "sni"


def httpFailureResponse(reason: Failure, realm: str = "gost") -> bytes:
    """
    The HTTP answer to a request whose target could not be reached.

    A relay server's refusal gets the matching status: Unauthorized (our
    credentials for the relay server are wrong) a 407, Forbidden a 403,
    its Timeout a 504, anything else it answered a 502; a relay server we
    could not reach or that did not answer a 502 (504 when it timed out).
    A direct dial failure keeps GOST's 503.  The body says which, without
    naming the relay server (the entry's log line does).
    """
    status = relayStatus(reason)
    if status is not None:
        text = statusText(status)
        body = f"the relay server refused the request: {text}\n".encode("latin-1", "replace")
        if status == Status.UNAUTHORIZED:
            quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
            return httpproxy.encodeResponse(
                407,
                headers=[("Proxy-Authenticate", f'Basic realm="{quoted}"'), ("Proxy-Agent", httpproxy.PROXY_AGENT)],
                body=body,
            )
        codes: dict[int, int] = {Status.FORBIDDEN: 403, Status.TIMEOUT: 504}
        code = codes.get(status, 502)
        return httpproxy.encodeResponse(code, headers=[("Proxy-Agent", httpproxy.PROXY_AGENT)], body=body)
    if isinstance(reason.value, HopFailed):
        how = reason.value.how
        code = 504 if "timed out" in how or "no response" in how else 502
        body = b"the relay server could not be reached or did not answer\n"
        return httpproxy.encodeResponse(code, headers=[("Proxy-Agent", httpproxy.PROXY_AGENT)], body=body)
    return httpproxy.encodeResponse(503)


def socks5FailureCode(reason: Failure) -> int:
    """
    The SOCKS5 reply code for a CONNECT that failed: a relay server's
    Forbidden is "not allowed", its Host Unreachable "host unreachable",
    anything else "network unreachable" (what GOST answers).
    """
    status = relayStatus(reason)
    if status is None:
        return socks.REP_NETWORK_UNREACHABLE
    replies: dict[int, int] = {
        Status.FORBIDDEN: socks.REP_NOT_ALLOWED,
        Status.HOST_UNREACHABLE: socks.REP_HOST_UNREACHABLE,
    }
    return replies.get(status, socks.REP_NETWORK_UNREACHABLE)


class ProxyEntryProtocol(PipingProtocol):
    """
    One client of the local proxy entry, from its request to the end of its
    pipe.
    """

    def __init__(self, handler: ProxyEntryHandler) -> None:
        super().__init__(handler)
        self.handler = handler
        self.mode: str | None = None if len(handler.modes) > 1 else next(iter(handler.modes))
        self.state = "start"
        self.buffer = b""
        self.user = ""
        self._timeout: Any = None
        self._httpParser: httpproxy.ProxyRequestParser | None = None
        self._negotiation: socks.Socks5ServerNegotiation | None = None
        self._onConnected: Any = None
        self._onFailed: Any = None
        self.association: Any = None
        self._canAnswerLate = False
        self._answered: int | None = None

    def _answerFailure(self, reason: Failure) -> None:
        response = httpFailureResponse(reason, self.handler.realm)
        self._answered = int(response.split(b" ", 2)[1])
        self.transport.write(response)  # type: ignore[union-attr]

    def _targetLost(self, reason: Failure | None) -> None:
        """
        The target side of the pipe is gone.  With the default
        C{nodelay=false} a relay server's refusal comes after we connected;
        for an absolute-URI request that got no byte of response yet we can
        still tell the client why instead of closing on it.
        """
        if (
            self._canAnswerLate
            and self._answered is None
            and reason is not None
            and reason.check(RelayRefused, HopFailed)
            and self.pipe is not None
            and self.pipe.transferred[B] == 0
            and self.state == "piping"
        ):
            self._answerFailure(reason)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._timeout = self.reactor.callLater(self.options.readTimeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timeout = None
        self._close(f"no complete request within {self.options.readTimeout:g}s")

    def _cancelTimeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    # -- input

    def dataReceived(self, data: bytes) -> None:
        if self.state == "piping":
            assert self.pipe is not None
            self.pipe.dataReceived(A, data)
            return
        self.buffer += data
        if self.state in ("dialing", "closed", "associating", "associated"):
            # Bytes on an association's control connection mean nothing.
            if self.state.startswith("associat"):
                self.buffer = b""
            return
        if len(self.buffer) > MAX_REQUEST_BUFFER:
            self._close(f"request larger than {MAX_REQUEST_BUFFER} bytes")
            return
        if self.mode is None:
            first = self.buffer[0]
            if first == 0x04 and SOCKS4 in self.handler.modes:
                self.mode = SOCKS4
            elif first == 0x05 and SOCKS5 in self.handler.modes:
                self.mode = SOCKS5
            elif first == 0x16 and SNI in self.handler.modes:
                self.mode = SNI
            elif first == 0x16:
                self._close("TLS ClientHello received: forwarding TLS by SNI is not supported")
                return
            else:
                self.mode = HTTP
        try:
            if self.mode == SOCKS5:
                self._socks5()
            elif self.mode == SOCKS4:
                self._socks4()
            elif self.mode == SNI:
                self._sni()
            else:
                self._http()
        except socks.SocksError as e:
            if e.reply:
                self.transport.write(e.reply)  # type: ignore[union-attr]
            self._close(f"bad {self.mode} request: {e}")
        except tlshello.TLSHelloError as e:
            self._close(f"bad TLS ClientHello: {e}")
        except httpproxy.HTTPProxyError as e:
            self.transport.write(httpproxy.encodeResponse(e.status))  # type: ignore[union-attr]
            self._close(f"bad HTTP request: {e}")

    def _take(self, consumed: int) -> None:
        self.buffer = self.buffer[consumed:]

    # -- SOCKS5

    def _socks5(self) -> None:
        """
        Drive the SOCKS5 negotiation (L{socks.Socks5ServerNegotiation}):
        write what it answers, then dial or associate what it asks for.
        """
        negotiation = self._negotiation
        if negotiation is None:
            auth = self.options.authenticator
            commands = {socks.CMD_CONNECT} | ({socks.CMD_UDP_ASSOCIATE} if self.handler.udp else set())
            negotiation = self._negotiation = socks.Socks5ServerNegotiation(
                auth.authenticate if auth is not None else None, frozenset(commands)
            )
        step = negotiation.receive(self.buffer)
        self._take(step.consumed)
        self.user = negotiation.user
        if step.send:
            self.transport.write(step.send)  # type: ignore[union-attr]
        if negotiation.request is not None:
            self.target = joinHostPort(negotiation.request.host, negotiation.request.port)
        if step.refused is not None:
            self._close(step.refused)
            return
        request = step.request
        if request is None:
            return
        if request.command == socks.CMD_UDP_ASSOCIATE:
            self._associate()
            return

        def connected(protocol: Any) -> None:
            host = protocol.transport.getHost()
            reply = negotiation.reply(socks.REP_SUCCEEDED, getattr(host, "host", "0.0.0.0"), getattr(host, "port", 0))
            self.transport.write(reply)  # type: ignore[union-attr]

        def failed(reason: Failure) -> None:
            self.transport.write(negotiation.reply(socks5FailureCode(reason)))  # type: ignore[union-attr]

        self._connect(connected, failed)

    def _associate(self) -> None:
        negotiation = self._negotiation
        assert negotiation is not None
        self._cancelTimeout()
        self.state = "associating"
        host = self.transport.getHost()  # type: ignore[union-attr]
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        association = UDPAssociation(
            self.reactor, self.options.router, self.log, self.peer,
            getattr(peer, "host", ""), self.handler.udpTTL,
            bypass=self.options.bypass, guard=self.options.guard,
        )
        self.association = association
        association.onClose = lambda: self.transport.loseConnection()  # type: ignore[union-attr]

        def ready(address: tuple[str, int]) -> None:
            if self.state != "associating":
                association.close()
                return
            self.state = "associated"
            self.transport.write(negotiation.reply(socks.REP_SUCCEEDED, *address))  # type: ignore[union-attr]
            self.log.info(
                "{peer} socks5 UDP association user={user!r}: open on {addr}",
                peer=self.peer, user=self.user, addr=joinHostPort(*address),
            )

        def failed(reason: Failure) -> None:
            if self.state != "associating":
                return
            self.transport.write(negotiation.reply(socks.REP_GENERAL_FAILURE))  # type: ignore[union-attr]
            why = reason.getErrorMessage()
            if isinstance(reason.value, RelayRefused) and reason.value.status == Status.FORBIDDEN:
                why = "the relay server refuses UDP association (it needs bind=true)"
            self._close(f"UDP association failed: {why}")

        association.start(getattr(host, "host", "")).addCallbacks(ready, failed)

    # -- SOCKS4

    def _socks4(self) -> None:
        parsed = socks.parseSocks4Request(self.buffer)
        if parsed is None:
            return
        request, consumed = parsed
        self._take(consumed)
        self.user = request.userid
        self.target = joinHostPort(request.host, request.port)
        auth = self.options.authenticator
        if auth is not None and not auth.authenticate(request.userid, ""):
            self.transport.write(socks.encodeSocks4Reply(socks.SOCKS4_REJECTED))  # type: ignore[union-attr]
            self._close(f"SOCKS4 user {request.userid!r} rejected")
            return
        if request.command != socks.SOCKS4_CONNECT:
            self.transport.write(socks.encodeSocks4Reply(socks.SOCKS4_REJECTED))  # type: ignore[union-attr]
            self._close("SOCKS4 BIND is not supported")
            return
        self._connect(
            lambda protocol: self.transport.write(socks.encodeSocks4Reply(socks.SOCKS4_GRANTED)),  # type: ignore[union-attr]
            lambda reason: self.transport.write(socks.encodeSocks4Reply(socks.SOCKS4_REJECTED)),  # type: ignore[union-attr]
        )

    # -- HTTP

    def _http(self) -> None:
        if self._httpParser is None:
            self._httpParser = httpproxy.ProxyRequestParser()
        data, self.buffer = self.buffer, b""
        request = self._httpParser.feed(data)
        if request is None:
            return
        self.buffer = self._httpParser.remainder
        self.target = request.address
        auth = self.options.authenticator
        if auth is not None:
            credentials = request.proxyCredentials()
            self.user = credentials[0] if credentials else ""
            if credentials is None or not auth.authenticate(*credentials):
                self.transport.write(httpproxy.proxyAuthRequired(self.handler.realm))  # type: ignore[union-attr]
                self._close(
                    f"HTTP proxy authentication failed for user {self.user!r}" if credentials else "HTTP proxy credentials missing"
                )
                return
        if request.isConnect:
            self._connect(
                lambda protocol: self.transport.write(httpproxy.CONNECTION_ESTABLISHED),  # type: ignore[union-attr]
                self._answerFailure,
            )
            return
        # An absolute-URI request: one upstream connection for this request,
        # which asks the origin to close, so the response ends with the
        # connection (as GOST does without upstream keep-alive).  Until the
        # first byte of the response the entry may still answer an error
        # itself (L{_targetLost}).
        self._canAnswerLate = True
        self.buffer = httpproxy.forwardRequestHead(request) + self.buffer
        self._connect(lambda protocol: None, self._answerFailure)

    def _sni(self) -> None:
        """
        A TLS ClientHello: forward it, untouched, to the name it carries
        (port 443, or the port in the name), as GOST's C{sni} handler.
        """
        if self.options.authenticator is not None:
            self._close("TLS ClientHello on an entry with users: not forwarded by SNI (it carries no credentials)")
            return
        name = tlshello.serverName(self.buffer)
        if name is None:
            return
        if not name:
            self._close("TLS ClientHello without a server name")
            return
        try:
            host, port = splitHostPort(name)
        except ValueError:
            host, port = name, 0
        self.target = joinHostPort(host, port or 443)
        self._connect(lambda protocol: None, lambda reason: None)

    # -- dialing and piping

    def _refusal(self) -> bytes:
        """
        The protocol's "not allowed" answer (a bypassed or private target).
        """
        return {
            HTTP: httpproxy.encodeResponse(403),
            SOCKS5: socks.encodeSocks5Reply(socks.REP_NOT_ALLOWED),
            SOCKS4: socks.encodeSocks4Reply(socks.SOCKS4_REJECTED),
            SNI: b"",
        }[self.mode or HTTP]

    def _connect(self, onConnected: Any, onFailed: Any) -> None:
        if self.options.bypasses(self.target):
            self.transport.write(self._refusal())  # type: ignore[union-attr]
            self._close(f"{self.target}: target matches the service bypass")
            return
        self._cancelTimeout()
        self.state = "dialing"
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._onConnected, self._onFailed = onConnected, onFailed
        self.dialTarget(self.target, sideFactory=self._targetSideFactory)

    def _targetSideFactory(self, pipe: Pipe) -> _TargetSideFactory:
        return _TargetSideFactory(pipe, self)

    def isDialing(self) -> bool:
        return self.state == "dialing"

    def targetConnected(self, protocol: Any) -> None:
        self.state = "piping"
        self._onConnected(protocol)
        self.log.info(
            "{peer} {mode} {target} user={user!r}: connected",
            peer=self.peer, mode=self.mode, target=logs.escape(self.target), user=self.user,
        )

    def targetRefused(self, reason: Failure) -> None:
        self.transport.write(self._refusal())  # type: ignore[union-attr]
        self._close(f"{self.target}: {reason.value}")

    def targetFailed(self, reason: Failure, why: str) -> None:
        self._onFailed(reason)
        if self._answered is not None:
            why = f"{why}; answered {self._answered}"
        self._close(f"{self.target}: {why}")

    def takeBuffered(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return rest

    def pipeClosed(self, pipe: Pipe, outcome: str) -> None:
        self.log.info(
            "{peer} {mode} {target} user={user!r}: closed, {up} bytes up, {down} bytes down, "
            "{duration:.3f}s, {outcome}",
            peer=self.peer, mode=self.mode, target=logs.escape(self.target), user=self.user,
            up=pipe.transferred[A], down=pipe.transferred[B],
            duration=self.reactor.seconds() - self.started,
            outcome=outcome + (f"; answered {self._answered}" if self._answered is not None else ""),
        )

    def _close(self, why: str) -> None:
        self.state = "closed"
        self.error = why
        self._cancelTimeout()
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.log.info(
            "{peer} {mode} {target}: closed: {why}",
            peer=self.peer, mode=self.mode or "proxy", target=logs.escape(self.target or "-"), why=logs.escape(why),
        )

    def readConnectionLost(self) -> None:
        self.clientEOF = True
        if self.state == "piping":
            assert self.pipe is not None
            self.pipe.readEOF(A)
        elif self.state.startswith("associat"):
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif self.state not in ("dialing", "closed"):
            self._close("peer closed before a complete request")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancelTimeout()
        state, self.state = self.state, "closed"
        if self.association is not None:
            self.association.close()
        if state == "piping":
            assert self.pipe is not None
            self.pipe.connectionLost(A, reason)
        elif state == "dialing":
            self.cancelDial()


class _TargetSide(PipeProtocol):
    """
    The target's side of an entry's pipe: tells the entry when it is lost,
    before the pipe closes the client (so that a late refusal can still be
    answered).
    """

    def __init__(self, pipe: Pipe, entry: ProxyEntryProtocol) -> None:
        super().__init__(pipe, B)
        self.entry = entry

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.entry._targetLost(reason)
        super().connectionLost(reason)


class _TargetSideFactory(PipeSideFactory):
    def __init__(self, pipe: Pipe, entry: ProxyEntryProtocol) -> None:
        super().__init__(pipe, B)
        self.entry = entry

    def buildProtocol(self, addr: object) -> _TargetSide:
        return _TargetSide(self.pipe, self.entry)


@implementer(IHandler)
class ProxyEntryHandler(StreamHandler):
    """
    Options (handler metadata): C{readTimeout} (15 s), C{idleTimeout}
    (0 = none), C{authBasicRealm} (C{gost}), C{udp} (false: SOCKS5 UDP
    ASSOCIATE refused), C{ttl} (60 s, ours: an idle UDP association ends),
    C{denyPrivate} (ours) and the pipe's (L{HandlerOptions}).  Users: URL
    userinfo, C{auth}, C{auther(s)}.
    """

    modes: frozenset[str] = frozenset({HTTP, SOCKS4, SOCKS5, SNI})
    authenticates = True
    guardsTargets = True

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        handler = service.handler
        assert handler is not None
        super().__init__(reactor, service, context, handler.type)
        md = handler.md
        self.realm = md.getString("authBasicRealm", default="gost") or "gost"
        self.udp = md.getBool("udp")
        self.udpTTL = md.getDuration("ttl") or 60.0

    def buildProtocol(self, addr: IAddress | None) -> ProxyEntryProtocol:
        return ProxyEntryProtocol(self)

    def reload(self) -> None:
        """
        Re-read users files (SIGHUP); on an error the previous users stay.
        """
        self.options.reload()


class AutoHandler(ProxyEntryHandler):
    modes = frozenset({HTTP, SOCKS4, SOCKS5, SNI})


class HTTPHandler(ProxyEntryHandler):
    modes = frozenset({HTTP})


class SOCKS5Handler(ProxyEntryHandler):
    modes = frozenset({SOCKS5})


class SOCKS4Handler(ProxyEntryHandler):
    modes = frozenset({SOCKS4})


class SNIHandler(ProxyEntryHandler):
    """
    GOST's C{sni} handler: a TLS ClientHello is forwarded by its server
    name, an HTTP request by its C{Host} (port 80).
    """

    modes = frozenset({HTTP, SNI})
