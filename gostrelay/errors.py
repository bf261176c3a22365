"""
One-line descriptions of connection failures, for log lines that name the
reason (a TLS certificate that expired, a name that does not match, an
unknown CA) rather than a repr.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure


def describeFailure(reason: Failure | None) -> str:
    if reason is None or reason.check(ConnectionDone):
        return "done"
    value = reason.value
    from service_identity import VerificationError

    if isinstance(value, VerificationError):
        names = []
        for error in value.errors:
            ident = getattr(getattr(error, "mismatched_id", None), "hostname", None)
            names.append(ident.decode("ascii", "replace") if isinstance(ident, bytes) else str(ident or error))
        return f"TLS: the certificate does not match the name {', '.join(names)} (wrong name)"
    from gostrelay.transports.tls import CertificateRejected

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
