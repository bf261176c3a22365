"""
The tls listener and dialer (spec-transports.md section 2): TLS directly over
TCP (or over the previous hop's tunnel), then the relay bytes.

Server certificate, in GOST's order: the listener's C{certFile}/C{keyFile}
(C{caFile} requires client certificates: mutual TLS); else C{cert.pem} and
C{key.pem} in the working directory; else the certificate kept in
C{~/.gost/auto-ca-cert.pem} and C{auto-ca-key.pem}, generated on first use
like GOST's (ECDSA P-256, C{CN=gost.run}, one year).

Client verification, GOST's matrix: by default nothing is verified
(C{secure=false}); C{caFile} alone verifies the chain against it, not the
name; C{secure=true} verifies chain and name (service-identity), against
C{caFile} or the system's roots.  SNI is C{serverName}, else the node's host
name; never an IP literal.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from OpenSSL.SSL import Error as TLSError
from OpenSSL.SSL import WantReadError, ZeroReturnError
from service_identity import VerificationError
from service_identity.pyopenssl import verify_hostname, verify_ip_address
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import directlyProvides, implementer, providedBy

from gostrelay.config.model import ConfigError, NodeConfig, ServiceConfig, TLSConfig
from gostrelay.declarations import declarationFor
from gostrelay.directwrite import writeNow
from gostrelay.errors import CertificateRejected
from gostrelay.interfaces import IDialer, IListener
from gostrelay.logs import Logger
from gostrelay.pipe import setNoDelay
from gostrelay.router import DEFAULT_DIAL_TIMEOUT, directEndpoint
from gostrelay.transports.tcp import DEFAULT_BACKLOG, serverEndpoint
from gostrelay.wire.address import splitHostPort

_log = Logger(namespace="gostrelay.tls")

AUTO_CERT = "auto-ca-cert.pem"
AUTO_KEY = "auto-ca-key.pem"


def generateCertificate(commonName: str = "gost.run", organization: str = "GOST", days: int = 365) -> tuple[bytes, bytes]:
    """
    A self-signed certificate like GOST's default: ECDSA P-256, the given
    CN and O, the CN as DNS SAN, server and client auth.  Returns PEM
    C{(certificate, key)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization), x509.NameAttribute(NameOID.COMMON_NAME, commonName)]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(commonName)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _read(path: str, what: str, where: str) -> bytes:
    try:
        return FilePath(os.path.expanduser(path)).getContent()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {what} {path}: {e.strerror}") from None


def defaultCertificate(home: str | None = None) -> tuple[bytes, bytes]:
    """
    GOST's default server certificate: C{cert.pem}/C{key.pem} in the working
    directory, else the one kept in C{~/.gost/}, generated (and kept, if the
    directory is writable) on first use.
    """
    if os.path.isfile("cert.pem") and os.path.isfile("key.pem"):
        return FilePath("cert.pem").getContent(), FilePath("key.pem").getContent()
    directory = os.path.join(home or os.path.expanduser("~"), ".gost")
    certPath, keyPath = os.path.join(directory, AUTO_CERT), os.path.join(directory, AUTO_KEY)
    if os.path.isfile(certPath) and os.path.isfile(keyPath):
        return FilePath(certPath).getContent(), FilePath(keyPath).getContent()
    certificate, key = generateCertificate()
    try:
        os.makedirs(directory, exist_ok=True)
        with open(certPath, "wb") as f:
            f.write(certificate)
        fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        _log.info("generated a self-signed TLS certificate in {path}", path=certPath)
    except OSError as e:
        _log.info("generated a self-signed TLS certificate (not kept: {e})", e=e.strerror)
    return certificate, key


def _loadCertificates(pem: bytes, what: str, where: str) -> list[crypto.X509]:
    certificates = []
    marker = b"-----BEGIN CERTIFICATE-----"
    for chunk in pem.split(marker)[1:]:
        try:
            certificates.append(crypto.load_certificate(crypto.FILETYPE_PEM, marker + chunk))
        except crypto.Error as e:
            raise ConfigError(f"{where}: {what} is not a PEM certificate: {e}") from None
    if not certificates:
        raise ConfigError(f"{where}: {what} holds no PEM certificate")
    return certificates


def serverContextFactory(tls: TLSConfig | None, where: str) -> ssl.CertificateOptions:
    """
    The server side's TLS options for a listener's C{tls} section.
    """
    if tls is not None and tls.certFile:
        certificatePem = _read(tls.certFile, "certFile", where)
        keyPem = _read(tls.keyFile or tls.certFile, "keyFile", where)
    else:
        certificatePem, keyPem = defaultCertificate()
    chain = _loadCertificates(certificatePem, "certFile", where)
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, keyPem)
    except crypto.Error as e:
        raise ConfigError(f"{where}: keyFile is not a PEM private key: {e}") from None
    kwargs: dict[str, Any] = {
        "privateKey": key,
        "certificate": chain[0],
        "extraCertChain": chain[1:],
        "raiseMinimumTo": ssl.TLSVersion.TLSv1_2,
        # Session tickets (as Go's, and so GOST's, servers send): a client
        # that resumes skips the certificate and its signature.
        "enableSessionTickets": True,
    }
    if tls is not None and tls.caFile:
        kwargs["caCerts"] = _loadCertificates(_read(tls.caFile, "caFile", where), "caFile", where)
        kwargs["verify"] = True
        kwargs["requireCertificate"] = True
    options = ssl.CertificateOptions(**kwargs)
    wholeWrites(options.getContext())
    return options


#: OpenSSL's C{SSL_MODE_ENABLE_PARTIAL_WRITE} (pyOpenSSL turns it on for
#: every context and exports no name for it).
_MODE_PARTIAL_WRITE = 0x1


def wholeWrites(context: SSL.Context) -> None:
    """
    Let one C{SSL_write} take a whole write (all its records) instead of
    one 16 KiB record: pyOpenSSL turns partial writes on, for sockets that
    may not take everything; our connections write into a memory BIO,
    which always does.  A 64 KiB write then costs one call into OpenSSL
    instead of four (each a few microseconds of pyOpenSSL's Python).
    Must be called before the context makes its first connection.
    """
    context.clear_mode(_MODE_PARTIAL_WRITE)


class BulkTLSProtocol(TLSMemoryBIOProtocol):
    """
    Twisted's TLS protocol with a bulk path that costs fewer Python calls
    per byte (the TLS work itself is OpenSSL's either way):

      - a write's records go to the socket in one transport write, where
        Twisted writes each 16 KiB record separately (four writes, four
        producer checks per 64 KiB), and are cut without copying;
      - the records decrypted from one socket read reach the application
        in one C{dataReceived} (up to L{_IN_SIZE} bytes), not one per
        record: one pass through the relay pipe per read.

    Byte order, back-pressure (the producer membrane), shutdown and error
    handling are Twisted's.
    """

    def makeConnection(self, transport: Any) -> None:
        # Twisted's makeConnection (and ProtocolWrapper's, which it calls),
        # but the interfaces taken over from the transport are a
        # declaration worked out once per transport type: Twisted calls
        # directlyProvides once per interface and then once more for all
        # of them (ProtocolWrapper's, which wins), each call normalising
        # the whole declaration again, on every connection (~3 % of a TLS
        # client's CPU per connection).
        # Relay carriers carry request/response traffic: records must not
        # wait for the peer's delayed ACK (Nagle).
        setNoDelay(transport)
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        declaration = _transportDeclaration(type(self), providedBy(transport), self._connectWrapped)
        if declaration is not None:
            self.__provides__ = declaration
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self._connectWrapped:
            self.wrappedProtocol.makeConnection(self)
        self._checkHandshakeStatus()

    def _checkHandshakeStatus(self) -> None:
        # Twisted's, with the C call made here: an unfinished handshake
        # (each step but the last) is told by SSL_get_error instead of
        # pyOpenSSL raising WantReadError (an exception and OpenSSL's error
        # queue read per step).
        if self._aborted:
            return
        connection = self._tlsConnection
        ssl = connection._ssl
        result = _lib.SSL_do_handshake(ssl)
        if result <= 0:
            if _lib.SSL_get_error(ssl, result) == _SSL_ERROR_WANT_READ:
                self._flushSendBIO()
                return
            try:
                connection._raise_ssl_error(ssl, result)
            except WantReadError:
                self._flushSendBIO()
                return
            except TLSError:
                self._tlsShutdownFinished(Failure())
                return
        self._handshakeDone = True
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def dataReceived(self, data: bytes) -> None:
        if not self._handshakeDone:
            # The handshake: Twisted's steps (the bytes in, the handshake
            # on, then held-back writes and application bytes), with the
            # C calls made here.
            result = _lib.BIO_write(self._tlsConnection._into_ssl, data, len(data))
            if result <= 0:
                self._tlsConnection._handle_bio_errors(self._tlsConnection._into_ssl, result)
            self._checkHandshakeStatus()
            if not self._handshakeDone:
                return
            if self._appSendBuffer:
                self._unbufferPendingWrites()
            self._flushReceiveBIO()
            return
        if self._appSendBuffer:
            # Writes held back: Twisted's path.
            super().dataReceived(data)
            return
        # Twisted's bio_write, without pyOpenSSL's checks and context
        # manager around the one C call (a memory BIO takes everything).
        result = _lib.BIO_write(self._tlsConnection._into_ssl, data, len(data))
        if result <= 0:
            self._tlsConnection._handle_bio_errors(self._tlsConnection._into_ssl, result)
        self._flushReceiveBIO()

    def _flushSendBIO(self) -> None:
        # The records go from the memory BIO into one buffer shared by every
        # connection (the reactor runs one at a time) and from there to the
        # socket: pyOpenSSL's bio_read would allocate a fresh buffer per call
        # (260 KiB: an mmap and its page faults) and copy it into bytes.
        # Only what the socket does not take at once is copied into bytes,
        # for Twisted to buffer.
        bio = self._tlsConnection._from_ssl
        while True:
            size = _lib.BIO_read(bio, _OUT, _OUT_SIZE)
            if size <= 0:
                # Empty (a memory BIO says so with -1 and "retry").
                return
            records = _ffi.buffer(_OUT, size)
            if not writeNow(self.transport, records):
                self.transport.write(records[:])  # type: ignore[union-attr]
            if size < _OUT_SIZE:
                # A memory BIO gives all it holds: it is empty now.
                return

    def _write(self, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        if not self._handshakeDone:
            # Held until the handshake is done (as Twisted's writes once
            # were): an SSL_write now would only start the handshake that
            # makeConnection starts anyway, and fail with WantReadError.
            self._bufferedWrite(data)
            return
        # One SSL_write takes all of a write when partial writes are off
        # (wholeWrites), else one record; either way the loop is the same.
        # The C call is made here: pyOpenSSL's send adds a context manager,
        # checks, and a full error check after every successful call.
        connection = self._tlsConnection
        ssl = connection._ssl
        size = len(data)
        sent = 0
        with _ffi.from_buffer(data) as plaintext:
            while sent < size:
                result = _lib.SSL_write(ssl, plaintext + sent, min(size - sent, _WRITE))
                if result > 0:
                    sent += result
                    continue
                try:
                    connection._raise_ssl_error(ssl, result)
                except WantReadError:
                    # A handshake in flight: retried with the same bytes once
                    # the peer has answered, as Twisted does.
                    self._bufferedWrite(data[sent:])
                    break
                except TLSError:
                    self._tlsShutdownFinished(Failure())
                    return
                else:
                    # No error for a failed write: pyOpenSSL would return 0
                    # (and its callers loop); keep the bytes for later.
                    self._bufferedWrite(data[sent:])
                    break
        self._flushSendBIO()

    def _flushReceiveBIO(self) -> None:
        # Every record decrypted from what was received goes into one buffer
        # shared by every connection (the reactor runs one at a time),
        # record after record, and reaches the application as one bytes
        # (at most _IN_SIZE): one copy out of OpenSSL, where pyOpenSSL's
        # recv allocates a buffer per record, copies it into bytes, and the
        # bytes are joined.  An empty receive BIO ends the loop through
        # SSL_get_error, not an exception.  The buffer is emptied (copied
        # into bytes) before anything is delivered, so a delivery that
        # comes back here finds it free.
        connection = self._tlsConnection
        ssl = connection._ssl
        filled = 0
        while not self._lostTLSConnection:
            result = _lib.SSL_read(ssl, _IN + filled, _IN_SIZE - filled)
            if result > 0:
                filled += result
                if filled == _IN_SIZE:
                    data = _ffi.buffer(_IN, filled)[:]
                    filled = 0
                    self._deliver(data)
                continue
            if _lib.SSL_get_error(ssl, result) == _SSL_ERROR_WANT_READ:
                break
            pending = _ffi.buffer(_IN, filled)[:] if filled else b""
            filled = 0
            try:
                connection._raise_ssl_error(ssl, result)
            except WantReadError:
                self._deliver(pending)
                break
            except ZeroReturnError:
                self._deliver(pending)
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except TLSError:
                failure = Failure()
                self._deliver(pending)
                self._tlsShutdownFinished(failure)
            else:
                self._deliver(pending)
                break
        if filled:
            self._deliver(_ffi.buffer(_IN, filled)[:])
        self._flushSendBIO()

    _sessionNoted = False
    #: Set by a client connection creator that resumes sessions.
    noteSession: Any = None

    def _deliver(self, data: bytes) -> None:
        if data and not self._aborted:
            if not self._sessionNoted:
                self._sessionNoted = True
                if self.noteSession is not None:
                    self.noteSession(self._tlsConnection)
            ProtocolWrapper.dataReceived(self, data)


def _transportDeclaration(cls: type, spec: Any, wrapping: bool) -> Any:
    """
    The interfaces a TLS protocol takes over from its transport declaring
    C{spec} (and whether it connects a wrapped protocol): what Twisted's
    makeConnection leaves on the protocol, worked out once per kind
    (L{declarationFor}).
    """

    def declare(probe: Any) -> None:
        # Twisted's own steps: TLSMemoryBIOProtocol's loop (each
        # directlyProvides replaces the previous one's declaration), then,
        # when it connects the wrapped protocol, ProtocolWrapper's.
        for interface in spec:
            directlyProvides(probe, interface)
        if wrapping:
            directlyProvides(probe, spec)

    return declarationFor(cls, (spec, wrapping), declare)


#: pyOpenSSL's own cffi binding of OpenSSL (the one its Connection uses).
_ffi = SSL._ffi  # type: ignore[attr-defined]
_lib = SSL._lib  # type: ignore[attr-defined]
_SSL_ERROR_WANT_READ = _lib.SSL_ERROR_WANT_READ
#: Plaintext given to one SSL_write, at most.
_WRITE = 1 << 18
#: The records of one write are read out of the memory BIO this much at a
#: time (a 256 KiB write's records fit).
_OUT_SIZE = (1 << 18) + (1 << 12)
_OUT = _ffi.new("char[]", _OUT_SIZE)
#: Decrypted bytes delivered in one C{dataReceived}, at most.
_IN_SIZE = 1 << 18
_IN = _ffi.new("char[]", _IN_SIZE)


class BulkTLSFactory(TLSMemoryBIOFactory):
    """
    L{TLSMemoryBIOFactory} building L{BulkTLSProtocol}s.
    """

    protocol = BulkTLSProtocol


@implementer(IStreamClientEndpoint)
class _TLSClientEndpoint:
    """
    C{wrapClientTLS}, with L{BulkTLSProtocol}.
    """

    def __init__(self, creator: Any, wrapped: IStreamClientEndpoint) -> None:
        self.creator = creator
        self.wrapped = wrapped

    def connect(self, protocolFactory: Any) -> Any:
        d: Any = self.wrapped.connect(BulkTLSFactory(self.creator, True, protocolFactory))
        return d.addCallback(lambda protocol: protocol.wrappedProtocol)


def tlsClientEndpoint(creator: Any, wrapped: IStreamClientEndpoint) -> IStreamClientEndpoint:
    """
    TLS over C{wrapped} with L{BulkTLSProtocol} (C{wrapClientTLS}'s
    shape), for every client carrier (tls, wss).
    """
    return _TLSClientEndpoint(creator, wrapped)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    TLS over a stream server endpoint.  A service's accept layer
    (L{gostrelay.layering}) takes it apart to run its checks below the TLS
    layer, before any handshake.
    """

    def __init__(self, inner: IStreamServerEndpoint, contextFactory: Any) -> None:
        self.inner = inner
        self.contextFactory = contextFactory

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(BulkTLSFactory(self.contextFactory, False, factory))


@implementer(IListener)
class TLSListener:
    """
    Options (listener C{tls} section / URL query): C{certFile}, C{keyFile},
    C{caFile} (mutual TLS); listener metadata C{backlog} (128).
    """

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        assert service.listener is not None
        where = service.source or service.name
        backlog = service.listener.md.getInt("backlog") or DEFAULT_BACKLOG
        self.contextFactory = serverContextFactory(service.listener.tls, where)
        self.endpoint = TLSServerEndpoint(serverEndpoint(reactor, service.addr, backlog, where), self.contextFactory)

    def listen(self, factory: Any) -> Any:
        return self.endpoint.listen(factory)


def _isIP(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: OpenSSL X509_V_ERR_* codes, in words.
_VERIFY_ERRORS = {
    9: "the certificate is not valid yet",
    10: "the certificate has expired",
    2: "the certificate is signed by an unknown CA",
    18: "the certificate is signed by an unknown CA (self-signed)",
    19: "the certificate is signed by an unknown CA (self-signed CA in the chain)",
    20: "the certificate is signed by an unknown CA",
    21: "the certificate is signed by an unknown CA",
    23: "the certificate has been revoked",
    26: "the certificate may not be used for this purpose",
}


def _verifyCallback(connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
    if ok:
        return True
    # The TLS protocol ends the connection with this reason (as Twisted's
    # own name check does), so the logs say why rather than a bare
    # "certificate verify failed".
    why = _VERIFY_ERRORS.get(errno, f"the certificate was rejected (X509 error {errno})")
    tlsProtocol = connection.get_app_data()
    if tlsProtocol is not None and getattr(tlsProtocol, "_reason", None) is None:
        tlsProtocol.failVerification(Failure(CertificateRejected(why)))
    return False


@implementer(IOpenSSLClientConnectionCreator)
class _GostClientCreator:
    """
    A client TLS connection creator with GOST's verification matrix: none
    (C{secure=false}), the chain only against C{caFile}, or with
    C{verifyName} the chain (against C{caFile} or the system's roots) and
    the server's name (service-identity, as Twisted's own client TLS
    does).  SNI only for host names.
    """

    def __init__(
        self,
        serverName: str,
        caCerts: list[crypto.X509] | None,
        clientCertificate: Any = None,
        verifyName: bool = False,
    ) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        wholeWrites(context)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        if caCerts:
            store = context.get_cert_store()
            assert store is not None
            for certificate in caCerts:
                store.add_cert(certificate)
            context.set_verify(SSL.VERIFY_PEER, _verifyCallback)
        elif verifyName:
            context.set_default_verify_paths()
            context.set_verify(SSL.VERIFY_PEER, _verifyCallback)
        else:
            # No Python callback: OpenSSL's own check of the chain is
            # ignored under VERIFY_NONE anyway, and a callback would be
            # called for every certificate of every full handshake.
            context.set_verify(SSL.VERIFY_NONE)
        if clientCertificate is not None:
            context.use_certificate(clientCertificate.original)
            context.use_privatekey(clientCertificate.privateKey.original)
        self.context = context
        self.serverName = serverName
        #: SNI, worked out once: the name, IDNA-encoded; none for an IP.
        self._sni = serverName.encode("idna") if serverName and not _isIP(serverName) else None
        self.verifyName = verifyName
        #: The session to resume on the next connection (the node's latest).
        self.session: SSL.Session | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        connection.set_app_data(tlsProtocol)
        if isinstance(tlsProtocol, BulkTLSProtocol):
            tlsProtocol.noteSession = self.noteSession
        if self.session is not None:
            # Resumption: no certificate, no signature to make or check (the
            # session was verified when it was made); a server that does not
            # take it does a full handshake.
            connection.set_session(self.session)
        if self.verifyName:
            connection.set_info_callback(self._handshakeDone)
        return connection

    def noteSession(self, connection: SSL.Connection) -> None:
        """
        A connection of ours received its first application bytes, so any
        TLS 1.3 session ticket the server sends (right after the handshake)
        has arrived: its session is the one to resume next.
        """
        session = connection.get_session()
        if session is not None:
            self.session = session

    def _handshakeDone(self, connection: SSL.Connection, where: int, ret: int) -> None:
        if not where & SSL.SSL_CB_HANDSHAKE_DONE:
            return
        tlsProtocol = connection.get_app_data()
        if not getattr(tlsProtocol, "_gostNameChecked", False):
            if tlsProtocol is not None:
                tlsProtocol._gostNameChecked = True
            self._checkName(connection)

    def _checkName(self, connection: SSL.Connection) -> None:
        try:
            if _isIP(self.serverName):
                verify_ip_address(connection, self.serverName)
            else:
                verify_hostname(connection, self.serverName)
        except VerificationError:
            connection.get_app_data().failVerification(Failure())


def clientCreator(tls: TLSConfig | None, nodeHost: str, where: str) -> Any:
    """
    The client side's TLS connection creator for a node's C{tls} section.
    """
    tls = tls or TLSConfig()
    serverName = tls.serverName or nodeHost
    clientCertificate = None
    if tls.certFile:
        certificatePem = _read(tls.certFile, "certFile", where)
        keyPem = _read(tls.keyFile or tls.certFile, "keyFile", where)
        clientCertificate = ssl.PrivateCertificate.loadPEM(certificatePem + b"\n" + keyPem)
    caCerts = _loadCertificates(_read(tls.caFile, "caFile", where), "caFile", where) if tls.caFile else None
    if tls.secure and not serverName:
        raise ConfigError(f"{where}: secure=true needs a serverName (or a host name in the node address)")
    return _GostClientCreator(serverName, caCerts, clientCertificate, verifyName=tls.secure)


def warnUnverifiedCredentials(node: NodeConfig, tls: TLSConfig | None, context: Any = None) -> None:
    """
    One warning at start when a node sends credentials (its connector's
    user and password) over TLS that does not verify the server (GOST's
    default: no C{secure}, no C{caFile}): any server, or anything in the
    path, can then present a certificate and read them.  Once per node
    when C{context} (the build's) says whether it was said already: every
    service using a chain builds the chain's dialers.
    """
    connector = node.connector
    auth = connector.auth if connector is not None else None
    if auth is None or not (auth.username or auth.file):
        return
    if tls is not None and (tls.secure or tls.caFile):
        return
    once = getattr(context, "once", None)
    if once is not None and not once(("unverified-credentials", node.name, node.addr)):
        return
    _log.warn(
        "node {name}: credentials go to {addr} over TLS that does not verify the server "
        "(GOST's default): anyone who can intercept the connection can read them; "
        "set secure=true (and serverName) or caFile",
        name=node.name, addr=node.addr,
    )


@implementer(IDialer)
class TLSDialer:
    """
    Options (dialer C{tls} section / URL query): C{serverName} (the node's
    host), C{secure} (false), C{caFile}, C{certFile}/C{keyFile} (client
    certificate).
    """

    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        self.reactor = reactor
        where = node.source or node.name
        dialer = node.dialer
        tls = dialer.tls if dialer is not None else None
        if tls is None:
            tls = node.tls
        host = _nodeHost(node.addr)
        self.creator = clientCreator(tls, host, where)
        warnUnverifiedCredentials(node, tls, context)

    #: C{endpoint} takes C{timeout=None}: the caller (a chain under a
    #: router) bounds the attempt, so the TCP connection gets no timer.
    timeoutOptional = True

    def endpoint(
        self, address: str, through: IStreamClientEndpoint | None = None, timeout: float | None = DEFAULT_DIAL_TIMEOUT
    ) -> IStreamClientEndpoint:
        if through is None:
            through = directEndpoint(self.reactor, address, timeout)
        return _TLSClientEndpoint(self.creator, through)


def _nodeHost(addr: str) -> str:
    try:
        host, _ = splitHostPort(addr)
    except ValueError:
        return ""
    return host
