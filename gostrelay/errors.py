"""
The failures of outgoing connections, in one place, and their one-line
descriptions for log lines (a TLS certificate that expired, a name that does
not match, an unknown CA) rather than a repr.

Callers dispatch on these types and their attributes, never on the shape of
an exception: a relay server's answer is L{relayStatus}, a refusing proxy
hop is a L{ProxyHopRefused}.

Import-light: Twisted's error module and the relay wire's status names only.
The TLS stack imports L{CertificateRejected} from here, never the other way,
so that routers, chains and handlers can name every failure without loading
pyOpenSSL.
"""

from __future__ import annotations

from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure

from gostrelay.wire.relay import statusText


class DialError(Exception):
    """
    A target could not be reached; C{str()} says why, for the log line.
    """


class UnsupportedNetwork(DialError):
    """
    A connector or route was asked for a network it does not speak.
    """


class TargetRefused(Exception):
    """
    The target guard (gostrelay.guard) refuses a target; C{str()} says why,
    for the log line.
    """


class HopFailed(DialError, ConnectError):
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
        ConnectError.__init__(self, string=self.message)
        self.server = server
        self.how = how
        self.status = status
        self.culprit = culprit

    def __str__(self) -> str:
        return self.message


class RelayRefused(ConnectError):
    """
    The relay server answered a status other than OK.  Not a L{DialError}:
    the server was reached and answered, so a router does not retry it and
    callers map its status (HTTP 403/407, SOCKS replies).

    @ivar status: the relay status it answered.
    @ivar target: what it was asked to reach.
    @ivar server: the relay server, as its node is named (address and hop).
    """

    def __init__(self, status: int, target: str, server: str = "") -> None:
        self.message = f"relay server {server + ' ' if server else ''}refused {target}: {statusText(status)}"
        super().__init__(self.message)
        self.status = status
        self.target = target
        self.server = server

    def __str__(self) -> str:
        return self.message


class ProxyHopRefused(ConnectError):
    """
    A proxy hop (http, socks) said no (or did not speak its protocol).

    @ivar proxy: the refusing node's address (C{"host:port"}), by which the
        chain finds the node to mark failed.
    @ivar answer: the proxy's answer in words.
    @ivar target: what the hop was asked to reach.
    """

    def __init__(self, proxy: str, label: str, target: str, answer: str) -> None:
        super().__init__(None, f"{label} refused {target}: {answer}")
        self.proxy = proxy
        self.answer = answer
        self.target = target


class CertificateRejected(Exception):
    """
    The peer's certificate failed verification; the message says why
    (expired, unknown CA, ...), for the log line.
    """


def relayStatus(reason: Failure) -> int | None:
    """
    The status a relay server answered when C{reason} is its answer (a
    refusal, or a chain node's refusal to reach the next node), else
    C{None}.
    """
    value = reason.value
    if isinstance(value, (RelayRefused, HopFailed)):
        return value.status
    return None


def describeConnectError(e: ConnectError) -> str:
    """
    A connection attempt's failure in a few words: C{connection refused},
    C{name not resolved}, C{timed out}, else the error's own text.
    """
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, DNSLookupError):
        return "name not resolved"
    if isinstance(e, (TimeoutError, TCPTimedOutError)):
        return "timed out"
    return e.osError if getattr(e, "osError", None) else (str(e.args[0]) if e.args else e.__class__.__name__)


def describeFailure(reason: Failure | None) -> str:
    if reason is None or reason.check(ConnectionDone):
        return "done"
    value = reason.value
    # service_identity and pyOpenSSL load only to describe a failure: this
    # module stays import-light (see the module docstring).
    from service_identity import VerificationError

    if isinstance(value, VerificationError):
        names = []
        for error in value.errors:
            ident = getattr(getattr(error, "mismatched_id", None), "hostname", None)
            names.append(ident.decode("ascii", "replace") if isinstance(ident, bytes) else str(ident or error))
        return f"TLS: the certificate does not match the name {', '.join(names)} (wrong name)"
    if isinstance(value, CertificateRejected):
        return f"TLS: {value}"
    text = reason.getErrorMessage()
    try:
        from OpenSSL import SSL
    except ImportError:  # pragma: no cover
        return text
    if isinstance(value, SSL.Error):
        flat = str(value.args)
        if "certificate has expired" in flat:
            return "TLS: the certificate has expired"
        if "unable to get local issuer certificate" in flat or "self-signed certificate" in flat or "self signed certificate" in flat:
            return "TLS: the certificate is signed by an unknown CA"
        if "certificate verify failed" in flat:
            return "TLS: certificate verification failed"
        if "tlsv1 alert unknown ca" in flat or "alert certificate required" in flat or "peer did not return a certificate" in flat:
            return "TLS: the peer refused our client certificate (mutual TLS)"
        if "wrong version number" in flat or "record layer failure" in flat or "packet length too long" in flat:
            return "TLS: the peer does not speak TLS"
        return f"TLS: {flat}"
    return text
