"""
The tls data channel (spec-transports.md section 2, spec-relay.md section
12): GOST's default certificate, the server's certificate choice and mutual
TLS, the client's verification matrix and SNI, and the relay protocol over
TLS, in process, over real sockets on 127.0.0.1.

This module also holds the helpers the other transport modules share
(test_ws, test_integration_transports, test_endpoints): a small PKI made
with C{cryptography}, an isolated C{HOME}/working directory (so that no test
reads or writes the real C{~/.gost} or a stray C{cert.pem}), an echo
target, a collecting client and a reactor settler that fails a test which
leaves a socket or a timer behind.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from gostrelay.build import buildServices
from gostrelay.config.model import TLSConfig
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.endpoints import chainEndpoint
from gostrelay.errors import describeFailure
from gostrelay.transports.tls import (
    AUTO_CERT,
    AUTO_KEY,
    TLSListener,
    clientCreator,
    defaultCertificate,
    generateCertificate,
    serverContextFactory,
)

MIB = 1024 * 1024


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _pemKey(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CA:
    """
    A certificate authority (ECDSA P-256) whose certificate is in
    C{self.certFile}.
    """

    def __init__(self, pki: PKI, name: str) -> None:
        self.pki = pki
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.certFile = pki.write(f"{name}-ca.pem", self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        commonName: str,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        expired: bool = False,
        client: bool = False,
    ) -> tuple[str, str]:
        """
        A leaf certificate signed by this CA; returns C{(certFile, keyFile)}.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            notBefore, notAfter = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            notBefore, notAfter = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return (
            self.pki.write(f"{name}.pem", certificate.public_bytes(serialization.Encoding.PEM)),
            self.pki.write(f"{name}-key.pem", _pemKey(key)),
        )


class PKI:
    """
    Certificates for one test, in a directory of their own.  C{ca},
    C{server} (localhost + 127.0.0.1), C{expired}, C{wrongName} (a name
    that is neither localhost nor 127.0.0.1), C{client} (clientAuth) are
    made on construction; C{otherCA} is an unrelated CA.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.ca = CA(self, "main")
        self.otherCA = CA(self, "other")
        self.server = self.ca.issue("server", "localhost", dns=("localhost",), ips=("127.0.0.1",))
        self.expired = self.ca.issue("expired", "localhost", dns=("localhost",), ips=("127.0.0.1",), expired=True)
        self.wrongName = self.ca.issue("wrongname", "elsewhere.test", dns=("elsewhere.test",))
        self.client = self.ca.issue("client", "test client", client=True)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path


def isolate(testCase: unittest.TestCase) -> tuple[str, str]:
    """
    Point C{HOME} at an empty temporary directory and make another empty
    temporary directory the working directory, for the rest of the test
    (both restored at cleanup).  Returns C{(home, cwd)}.
    """
    home = os.path.abspath(testCase.mktemp())
    cwd = os.path.abspath(testCase.mktemp())
    os.makedirs(home)
    os.makedirs(cwd)
    oldHome = os.environ.get("HOME")
    oldCwd = os.getcwd()

    def restore() -> None:
        os.chdir(oldCwd)
        if oldHome is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = oldHome

    testCase.addCleanup(restore)
    os.environ["HOME"] = home
    os.chdir(cwd)
    return home, cwd


class ReactorSettler:
    """
    Remembers the reactor's sockets and timers when a test starts; at
    cleanup waits (bounded) until only those are left, else aborts the
    stragglers and fails the test naming them.
    """

    def __init__(self) -> None:
        self.selectables = self._selectables()
        self.calls = set(reactor.getDelayedCalls())

    @staticmethod
    def _selectables() -> set[Any]:
        return set(reactor.getReaders()) | set(reactor.getWriters())

    def _extra(self) -> tuple[set[Any], list[Any]]:
        internal = set(getattr(reactor, "_internalReaders", ()))
        sel = self._selectables() - self.selectables - internal
        calls = [
            c
            for c in reactor.getDelayedCalls()
            if c not in self.calls and c.active() and "TestCase._run" not in getattr(c.func, "__qualname__", "")
        ]
        return sel, calls

    @defer.inlineCallbacks
    def settle(self, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        deadline = reactor.seconds() + timeout
        while True:
            sel, calls = self._extra()
            if not sel and not calls:
                return
            if reactor.seconds() > deadline:
                for s in sel:
                    if hasattr(s, "abortConnection"):
                        s.abortConnection()
                    elif hasattr(s, "stopListening"):
                        s.stopListening()
                for c in calls:
                    if c.active():
                        c.cancel()
                yield task.deferLater(reactor, 0.05, lambda: None)
                raise AssertionError(f"left behind after {timeout:g}s: sockets {sel!r}, timers {calls!r}")
            yield task.deferLater(reactor, 0.01, lambda: None)


def withTimeout(d: defer.Deferred[Any], seconds: float, what: str) -> defer.Deferred[Any]:
    """
    C{d}, failing with L{defer.TimeoutError} naming C{what} after
    C{seconds}.
    """

    def timedOut(result: Any, timeout: float) -> Any:
        if isinstance(result, Failure) and result.check(defer.CancelledError):
            raise defer.TimeoutError(f"{what}: nothing after {timeout:g}s")
        return result

    d.addTimeout(seconds, reactor, onTimeoutCancel=timedOut)
    return d


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echo every byte; on the peer's FIN close after the echoed bytes.
    """

    def connectionMade(self) -> None:
        self.received = 0
        self.factory.accepted.append(self)  # type: ignore[attr-defined]
        self.factory.open.add(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class EchoFactory(Factory):
    protocol = Echo
    noisy = False

    def __init__(self) -> None:
        self.accepted: list[Echo] = []
        self.open: set[Echo] = set()


class Collector(Protocol):
    """
    A client: sends C{payload} when connected, collects what comes back;
    once C{expect} bytes (default: as many as it sent, for an echo) have
    arrived it closes.  C{done} fires with itself when the connection is
    lost (C{reason} says why).
    """

    def __init__(self, payload: bytes = b"", expect: int | None = None) -> None:
        self.payload = payload
        self.expect = len(payload) if expect is None else expect
        self.data = bytearray()
        self.done: defer.Deferred[Collector] = defer.Deferred()
        self.reason: Failure | None = None
        self.lost = False
        self.connected = False

    def connectionMade(self) -> None:
        self.connected = True
        if self.payload:
            self.transport.write(self.payload)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.expect and len(self.data) >= self.expect:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        self.reason = reason
        self.done.callback(self)


class LogCapture:
    """
    The text of every log event while installed.
    """

    def __init__(self, testCase: unittest.TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def text(self) -> str:
        return "\n".join(self.texts())


class TransportTestCase(unittest.TestCase):
    """
    Services in process on the real reactor, settled at cleanup.
    """

    timeout = 30

    def setUp(self) -> None:
        settler = ReactorSettler()
        self.addCleanup(settler.settle)

    @defer.inlineCallbacks
    def startServices(self, listen: list[str], forward: list[str] = ()):  # type: ignore[no-untyped-def]
        """
        Run the services of C{-L listen... -F forward...} in this process;
        fire with their L{GostService}s once all listen.
        """
        top = buildServices(reactor, buildConfigFromCommandLine(list(listen), list(forward)))
        top.startService()
        self.addCleanup(top.stopService)
        services = list(top)
        for svc in services:
            yield svc.listening
        return services

    @defer.inlineCallbacks
    def startService(self, url: str):  # type: ignore[no-untyped-def]
        """
        One service; fire with C{(service, port)}.
        """
        (svc,) = yield self.startServices([url])
        return svc, svc.port.getHost().port

    def listenTCP(self, factory: Any) -> int:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")

        def cleanup() -> Any:
            for proto in list(getattr(factory, "open", ())):
                if proto.transport is not None:
                    proto.transport.abortConnection()
            return port.stopListening()

        self.addCleanup(cleanup)
        return port.getHost().port

    def startEcho(self) -> tuple[EchoFactory, int]:
        factory = EchoFactory()
        return factory, self.listenTCP(factory)

    @defer.inlineCallbacks
    def exchange(self, endpoint: Any, payload: bytes, timeout: float = 10.0, expect: int | None = None):  # type: ignore[no-untyped-def]
        """
        Connect C{endpoint} with a L{Collector} sending C{payload}; fire
        with the collector once the connection has ended (whether or not
        the connect succeeded: C{collector.connectError} holds a connect
        failure).
        """
        client = Collector(payload, expect)
        client.connectError = None  # type: ignore[attr-defined]
        try:
            yield withTimeout(connectProtocol(endpoint, client), timeout, "connect")
        except Exception:
            client.connectError = Failure()  # type: ignore[attr-defined]
            return client

        def abort() -> Any:
            if not client.lost and client.transport is not None:
                client.transport.abortConnection()
                return withTimeout(client.done, 5, "client end after abort")
            return None

        self.addCleanup(abort)
        yield withTimeout(client.done, timeout, f"exchange of {len(payload)} bytes")
        return client

    def failureText(self, client: Collector) -> str:
        """
        describeFailure of why C{client} failed: the connect failure, or
        the reason its connection was lost.
        """
        reason = getattr(client, "connectError", None) or client.reason
        return describeFailure(reason)

    def assertEchoed(self, client: Collector, payload: bytes) -> None:
        self.assertIsNone(getattr(client, "connectError", None), "connect failed")
        self.assertEqual(len(client.data), len(payload), f"echo incomplete; lost because: {self.failureText(client)}")
        self.assertTrue(bytes(client.data) == payload, "echoed bytes differ")

    def assertFailedWithout(self, client: Collector, echo: EchoFactory | None = None) -> str:
        """
        C{client} got nothing back and its connection did not end cleanly;
        returns describeFailure of the reason.
        """
        self.assertEqual(bytes(client.data), b"", "data came back through a connection that should fail")
        connectError = getattr(client, "connectError", None)
        reason = connectError or client.reason
        self.assertIsNotNone(reason)
        self.assertFalse(
            connectError is None and reason.check(ConnectionDone),  # type: ignore[union-attr]
            "the connection ended cleanly; expected a TLS failure",
        )
        if echo is not None:
            self.assertEqual([e.received for e in echo.accepted if e.received], [], "bytes reached the target")
        return describeFailure(reason)


# ---------------------------------------------------------------------------
# The default certificate
# ---------------------------------------------------------------------------


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


class GenerateCertificateTests(unittest.TestCase):
    def test_gostLike(self) -> None:
        """
        ECDSA P-256, O=GOST CN=gost.run, DNS SAN gost.run, EKU serverAuth
        and clientAuth, about one year, ECDSA-SHA256, PKCS#8 key matching
        the certificate.
        """
        certPem, keyPem = generateCertificate()
        cert = _load(certPem)
        public = cert.public_key()
        self.assertIsInstance(public, ec.EllipticCurvePublicKey)
        self.assertEqual(public.curve.name, "secp256r1")
        self.assertEqual([a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)], ["gost.run"])
        self.assertEqual([a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)], ["GOST"])
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["gost.run"])
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(set(eku), {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})
        self.assertEqual(cert.signature_hash_algorithm.name, "sha256")  # type: ignore[union-attr]
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertTrue(datetime.timedelta(days=364) <= lifetime <= datetime.timedelta(days=366), lifetime)
        now = datetime.datetime.now(datetime.UTC)
        self.assertTrue(cert.not_valid_before_utc <= now <= cert.not_valid_after_utc)
        self.assertIn(b"BEGIN PRIVATE KEY", keyPem)  # PKCS#8
        key = serialization.load_pem_private_key(keyPem, None)
        self.assertEqual(
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )

    def test_freshEachTime(self) -> None:
        """
        Each call makes a new key and serial.
        """
        a, b = _load(generateCertificate()[0]), _load(generateCertificate()[0])
        self.assertNotEqual(a.serial_number, b.serial_number)
        self.assertNotEqual(a.public_key().public_numbers(), b.public_key().public_numbers())  # type: ignore[union-attr]


class DefaultCertificateTests(unittest.TestCase):
    def test_generatedOnceAndKept(self) -> None:
        """
        Without cert.pem/key.pem in the working directory, the first call
        generates a certificate into $HOME/.gost (key 0600) and later calls
        return the same bytes.
        """
        home, cwd = isolate(self)
        certPem, keyPem = defaultCertificate()
        directory = os.path.join(home, ".gost")
        with open(os.path.join(directory, AUTO_CERT), "rb") as f:
            self.assertEqual(f.read(), certPem)
        with open(os.path.join(directory, AUTO_KEY), "rb") as f:
            self.assertEqual(f.read(), keyPem)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, AUTO_KEY)).st_mode) & 0o077, 0)
        self.assertEqual(_load(certPem).subject.rfc4514_string(), "CN=gost.run,O=GOST")
        self.assertEqual(defaultCertificate(), (certPem, keyPem))
        self.assertEqual(os.listdir(cwd), [], "nothing is written to the working directory")

    def test_keptCertificateReused(self) -> None:
        """
        A certificate already in $HOME/.gost (made by GOST, say) is used
        as it is.
        """
        home, cwd = isolate(self)
        os.makedirs(os.path.join(home, ".gost"))
        certPem, keyPem = generateCertificate("kept.example", "Kept")
        for name, data in ((AUTO_CERT, certPem), (AUTO_KEY, keyPem)):
            with open(os.path.join(home, ".gost", name), "wb") as f:
                f.write(data)
        self.assertEqual(defaultCertificate(), (certPem, keyPem))

    def test_workingDirectoryFirst(self) -> None:
        """
        cert.pem and key.pem in the working directory win; $HOME/.gost is
        then neither read nor created.
        """
        home, cwd = isolate(self)
        certPem, keyPem = generateCertificate("cwd.example")
        with open("cert.pem", "wb") as f:
            f.write(certPem)
        with open("key.pem", "wb") as f:
            f.write(keyPem)
        self.assertEqual(defaultCertificate(), (certPem, keyPem))
        self.assertFalse(os.path.exists(os.path.join(home, ".gost")))

    def test_workingDirectoryNeedsBoth(self) -> None:
        """
        cert.pem without key.pem is not a pair: the kept one is used.
        """
        home, cwd = isolate(self)
        with open("cert.pem", "wb") as f:
            f.write(generateCertificate("cwd.example")[0])
        certPem, keyPem = defaultCertificate()
        self.assertEqual(_load(certPem).subject.rfc4514_string(), "CN=gost.run,O=GOST")
        self.assertTrue(os.path.isfile(os.path.join(home, ".gost", AUTO_CERT)))

    def test_unwritableHome(self) -> None:
        """
        When $HOME/.gost cannot be created the certificate is still made
        (only not kept).
        """
        home, cwd = isolate(self)
        blocker = os.path.join(home, "file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        os.environ["HOME"] = blocker
        certPem, keyPem = defaultCertificate()
        self.assertEqual(_load(certPem).subject.rfc4514_string(), "CN=gost.run,O=GOST")

    def test_listenerUsesDefault(self) -> None:
        """
        A tls listener without certFile serves the default certificate.
        """
        home, cwd = isolate(self)
        config = buildConfigFromCommandLine(["relay+tls://127.0.0.1:0"], [])
        listener = TLSListener(reactor, config.services[0], None)
        served = listener.contextFactory.certificate  # a pyOpenSSL X509
        with open(os.path.join(home, ".gost", AUTO_CERT), "rb") as f:
            kept = _load(f.read())
        self.assertEqual(served.to_cryptography(), kept)


# ---------------------------------------------------------------------------
# Relay over TLS
# ---------------------------------------------------------------------------


def _peerCommonName(client: Collector) -> str | None:
    """
    The CN of the certificate the TLS server presented to C{client} (its
    transport is the relay client, which passes unknown attributes on to
    the TLS transport).
    """
    cert = client.transport.getPeerCertificate()  # type: ignore[union-attr]
    if cert is None:
        return None
    return cert.get_subject().CN  # type: ignore[no-any-return]


class RelayOverTLSTests(TransportTestCase):
    """
    A relay+tls service in process; the client is L{chainEndpoint} with
    GOST C{-F} URLs.
    """

    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)
        self.pki = PKI(self.mktemp())

    @defer.inlineCallbacks
    def echoThrough(self, serverURL: str, nodeURL: str, payload: bytes = b"hello over tls", host: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
        """
        Start C{serverURL} (its port: C{{port}} in C{nodeURL}) and an echo
        target; exchange C{payload} through C{nodeURL}.  Fires with
        C{(client, echo, service)}.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService(serverURL)
        endpoint = chainEndpoint(reactor, [nodeURL.format(port=port, host=host)], "127.0.0.1", echoPort)
        client = yield self.exchange(endpoint, payload)
        return client, echo, svc

    @defer.inlineCallbacks
    def test_defaultNoVerification(self):  # type: ignore[no-untyped-def]
        """
        Default settings on both sides: the server presents the
        certificate it generated into $HOME/.gost, the client verifies
        nothing, 1 MiB echoes.
        """
        payload = os.urandom(MIB)
        client, echo, svc = yield self.echoThrough("relay+tls://127.0.0.1:0", "relay+tls://127.0.0.1:{port}", payload)
        self.assertEchoed(client, payload)
        self.assertEqual(len(echo.accepted), 1)
        with open(os.path.join(self.home, ".gost", AUTO_CERT), "rb") as f:
            kept = _load(f.read())
        # The connection is over; what the server showed is also what it
        # will show next time:
        listener = svc.listener
        self.assertEqual(listener.contextFactory.certificate.to_cryptography(), kept)

    @defer.inlineCallbacks
    def test_defaultPeerCertificate(self):  # type: ignore[no-untyped-def]
        """
        The client really talks TLS: its transport has the server's
        gost.run certificate.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+tls://127.0.0.1:0")
        endpoint = chainEndpoint(reactor, [f"relay+tls://127.0.0.1:{port}"], "127.0.0.1", echoPort)
        client = Collector(b"ping", expect=4)
        seen: list[Any] = []
        original = client.dataReceived

        def dataReceived(data: bytes) -> None:
            if not seen:
                seen.append(_peerCommonName(client))
            original(data)

        client.dataReceived = dataReceived  # type: ignore[method-assign]
        yield connectProtocol(endpoint, client)
        yield withTimeout(client.done, 10, "echo")
        self.assertEqual(bytes(client.data), b"ping")
        self.assertEqual(seen, ["gost.run"])

    @defer.inlineCallbacks
    def test_plainClientRefused(self):  # type: ignore[no-untyped-def]
        """
        A relay client without TLS gets no relay service from a tls
        listener.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+tls://127.0.0.1:0")
        endpoint = chainEndpoint(reactor, [f"relay://127.0.0.1:{port}"], "127.0.0.1", echoPort)
        client = yield self.exchange(endpoint, b"no tls here")
        self.assertEqual(bytes(client.data), b"")
        self.assertEqual(echo.accepted, [])

    @defer.inlineCallbacks
    def test_secureWithServerName(self):  # type: ignore[no-untyped-def]
        """
        secure=true, serverName=localhost, caFile=the CA, against a
        CA-signed localhost certificate: works.
        """
        cert, key = self.pki.server
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?secure=true&serverName=localhost&caFile={self.pki.ca.certFile}",
        )
        self.assertEchoed(client, b"hello over tls")
        self.assertEqual(len(echo.accepted), 1)

    @defer.inlineCallbacks
    def test_secureIPNode(self):  # type: ignore[no-untyped-def]
        """
        secure=true without serverName on an IP node: the IP is checked
        against the certificate's IP SANs (127.0.0.1 is in it).
        """
        cert, key = self.pki.server
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?secure=true&caFile={self.pki.ca.certFile}",
        )
        self.assertEchoed(client, b"hello over tls")

    @defer.inlineCallbacks
    def test_secureWrongName(self):  # type: ignore[no-untyped-def]
        """
        secure=true with a serverName the certificate does not carry:
        nothing reaches the target, the application's connection is lost
        with a failure described as 'wrong name', and the connector logs
        it.
        """
        logs = LogCapture(self)
        cert, key = self.pki.server
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?secure=true&serverName=wrong.example&caFile={self.pki.ca.certFile}",
        )
        text = self.assertFailedWithout(client, echo)
        self.assertIn("wrong name", text)
        self.assertIn("wrong.example", text)
        self.assertEqual(echo.accepted, [])
        # The connector logs after the application has been told.
        yield sleep(0.01)
        self.assertIn("wrong name", logs.text())

    @defer.inlineCallbacks
    def test_expired(self):  # type: ignore[no-untyped-def]
        """
        An expired certificate, checked against caFile: the connection
        fails, described as 'expired'.

        Regression test (a bug found by this test and fixed in
        7fd1946); before the fix: the connection does fail, but
        describeFailure says 'TLS: certificate verification failed'.  With
        OpenSSL 3 the handshake error is only ('SSL routines', '',
        'certificate verify failed'); the X509 verify result (10,
        "certificate has expired") reaches the verify callback of
        gostrelay.transports.tls._GostClientCreator (errno argument) and
        Twisted's verification, but is dropped, so errors.describeFailure
        can never say 'expired'.
        """
        cert, key = self.pki.expired
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?caFile={self.pki.ca.certFile}",
        )
        text = self.assertFailedWithout(client, echo)
        self.assertEqual(echo.accepted, [])
        self.assertIn("expired", text)

    @defer.inlineCallbacks
    def test_unknownCA(self):  # type: ignore[no-untyped-def]
        """
        secure=true with caFile naming another CA: the connection fails,
        described as 'unknown CA'.

        Regression test (a bug found by this test and fixed in
        7fd1946); before the fix: describeFailure says 'TLS:
        certificate verification failed' (same cause as test_expired: the
        verify result, 20 "unable to get local issuer certificate", is not
        in the SSL.Error that reaches describeFailure).
        """
        cert, key = self.pki.server
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?secure=true&serverName=localhost&caFile={self.pki.otherCA.certFile}",
        )
        text = self.assertFailedWithout(client, echo)
        self.assertEqual(echo.accepted, [])
        self.assertIn("unknown CA", text)

    @defer.inlineCallbacks
    def test_caFileChainOnly(self):  # type: ignore[no-untyped-def]
        """
        caFile without secure verifies the chain, not the name: a
        CA-signed certificate for elsewhere.test is accepted for
        127.0.0.1.
        """
        cert, key = self.pki.wrongName
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?caFile={self.pki.ca.certFile}",
        )
        self.assertEchoed(client, b"hello over tls")

    @defer.inlineCallbacks
    def test_caFileChainOnlyOtherCA(self):  # type: ignore[no-untyped-def]
        """
        caFile without secure still verifies the chain: a certificate of
        another CA is refused.
        """
        cert, key = self.pki.wrongName
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}",
            f"relay+tls://127.0.0.1:{{port}}?caFile={self.pki.otherCA.certFile}",
        )
        self.assertFailedWithout(client, echo)
        self.assertEqual(echo.accepted, [])

    @defer.inlineCallbacks
    def test_secureDefaultCertificateRefused(self):  # type: ignore[no-untyped-def]
        """
        secure=true against the self-signed default certificate, with
        caFile of our CA: refused (and secure=false takes it).
        """
        client, echo, svc = yield self.echoThrough(
            "relay+tls://127.0.0.1:0",
            f"relay+tls://127.0.0.1:{{port}}?secure=true&serverName=gost.run&caFile={self.pki.ca.certFile}",
        )
        self.assertFailedWithout(client, echo)
        self.assertEqual(echo.accepted, [])

    @defer.inlineCallbacks
    def test_mutualTLS(self):  # type: ignore[no-untyped-def]
        """
        A listener with caFile requires a client certificate: without one
        the connection fails and nothing reaches the target; with a
        certificate signed by the CA it works.
        """
        echo, echoPort = self.startEcho()
        cert, key = self.pki.server
        svc, port = yield self.startService(
            f"relay+tls://127.0.0.1:0?certFile={cert}&keyFile={key}&caFile={self.pki.ca.certFile}"
        )
        without = yield self.exchange(
            chainEndpoint(reactor, [f"relay+tls://127.0.0.1:{port}"], "127.0.0.1", echoPort), b"no certificate"
        )
        text = self.assertFailedWithout(without, echo)
        self.assertIn("client certificate", text)
        self.assertEqual(echo.accepted, [])

        clientCert, clientKey = self.pki.client
        other = self.pki.otherCA.issue("other-client", "stranger", client=True)
        stranger = yield self.exchange(
            chainEndpoint(
                reactor, [f"relay+tls://127.0.0.1:{port}?certFile={other[0]}&keyFile={other[1]}"], "127.0.0.1", echoPort
            ),
            b"certificate of another CA",
        )
        self.assertFailedWithout(stranger, echo)
        self.assertEqual(echo.accepted, [])

        payload = os.urandom(100000)
        good = yield self.exchange(
            chainEndpoint(
                reactor, [f"relay+tls://127.0.0.1:{port}?certFile={clientCert}&keyFile={clientKey}"], "127.0.0.1", echoPort
            ),
            payload,
        )
        self.assertEchoed(good, payload)
        self.assertEqual(len(echo.accepted), 1)

    @defer.inlineCallbacks
    def test_caFileIgnoredWithoutCertFile(self):  # type: ignore[no-untyped-def]
        """
        On the CLI, caFile without certFile on -L is dropped with the whole
        TLS block (spec 2.1): no client certificate is required.
        """
        client, echo, svc = yield self.echoThrough(
            f"relay+tls://127.0.0.1:0?caFile={self.pki.ca.certFile}", "relay+tls://127.0.0.1:{port}"
        )
        self.assertEchoed(client, b"hello over tls")


# ---------------------------------------------------------------------------
# SNI
# ---------------------------------------------------------------------------


class SNITests(TransportTestCase):
    """
    The server name a client sends, captured on the server by a pyOpenSSL
    servername callback on the listener's context.
    """

    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)

    @defer.inlineCallbacks
    def sniFor(self, serverURL: str, nodeURL: str, context: Any = None):  # type: ignore[no-untyped-def]
        """
        The SNI values the server saw for one echo through C{nodeURL}.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService(serverURL)
        listener = svc.listener
        if context is None:
            factory = getattr(listener, "contextFactory", None)
            if factory is None:  # wss: the TLS endpoint under the WebSocket one
                factory = listener.endpoint.inner.contextFactory
            context = factory.getContext()
        seen: list[Any] = []
        context.set_tlsext_servername_callback(lambda conn: seen.append(conn.get_servername()))
        client = yield self.exchange(
            chainEndpoint(reactor, [nodeURL.format(port=port)], "127.0.0.1", echoPort), b"sni"
        )
        self.assertEchoed(client, b"sni")
        return seen

    @defer.inlineCallbacks
    def test_hostNode(self):  # type: ignore[no-untyped-def]
        seen = yield self.sniFor("relay+tls://127.0.0.1:0", "relay+tls://localhost:{port}")
        self.assertEqual(seen, [b"localhost"])

    @defer.inlineCallbacks
    def test_ipNode(self):  # type: ignore[no-untyped-def]
        seen = yield self.sniFor("relay+tls://127.0.0.1:0", "relay+tls://127.0.0.1:{port}")
        self.assertEqual(seen, [None])

    @defer.inlineCallbacks
    def test_serverNameOnIPNode(self):  # type: ignore[no-untyped-def]
        """
        serverName is sent as SNI even when the node is an IP.
        """
        seen = yield self.sniFor("relay+tls://127.0.0.1:0", "relay+tls://127.0.0.1:{port}?serverName=sni.example")
        self.assertEqual(seen, [b"sni.example"])

    @defer.inlineCallbacks
    def test_wssHostOptionIsNotSNI(self):  # type: ignore[no-untyped-def]
        """
        wss: SNI is the node host; the ws host option changes the Host
        header only (spec 3.1).
        """
        seen = yield self.sniFor("relay+wss://127.0.0.1:0", "relay+wss://localhost:{port}?host=cdn.example")
        self.assertEqual(seen, [b"localhost"])

    @defer.inlineCallbacks
    def test_wssIPNode(self):  # type: ignore[no-untyped-def]
        seen = yield self.sniFor("relay+wss://127.0.0.1:0", "relay+wss://127.0.0.1:{port}")
        self.assertEqual(seen, [None])


class ClientCreatorTests(unittest.TestCase):
    """
    The verification matrix as connection settings (no sockets).
    """

    def setUp(self) -> None:
        self.pki = PKI(self.mktemp())

    def test_defaultVerifiesNothing(self) -> None:
        from OpenSSL import SSL

        creator = clientCreator(None, "127.0.0.1", "test")
        connection = creator.clientConnectionForTLS(None)
        self.assertEqual(connection.get_context().get_verify_mode(), SSL.VERIFY_NONE)

    def test_caFileVerifiesPeer(self) -> None:
        from OpenSSL import SSL

        creator = clientCreator(TLSConfig(caFile=self.pki.ca.certFile), "127.0.0.1", "test")
        connection = creator.clientConnectionForTLS(None)
        self.assertTrue(connection.get_context().get_verify_mode() & SSL.VERIFY_PEER)

    def test_sniOnlyForNames(self) -> None:
        byName = clientCreator(None, "relay.example", "test").clientConnectionForTLS(None)
        self.assertEqual(byName.get_servername(), b"relay.example")
        for ip in ("127.0.0.1", "::1"):
            byIP = clientCreator(None, ip, "test").clientConnectionForTLS(None)
            self.assertIsNone(byIP.get_servername(), ip)

    def test_missingCAFileIsConfigError(self) -> None:
        from gostrelay.config.model import ConfigError

        self.assertRaises(
            ConfigError, clientCreator, TLSConfig(caFile=os.path.join(self.pki.directory, "nope.pem")), "h", "test"
        )

    def test_serverKeyFileNotAKey(self) -> None:
        from gostrelay.config.model import ConfigError

        cert, key = self.pki.server
        e = self.assertRaises(ConfigError, serverContextFactory, TLSConfig(certFile=cert, keyFile=cert), "svc")
        self.assertIn("keyFile", str(e))


# Keep the module's public helpers visible to the other transport modules.
__all__ = [
    "CA",
    "PKI",
    "Collector",
    "Echo",
    "EchoFactory",
    "LogCapture",
    "ReactorSettler",
    "TransportTestCase",
    "isolate",
    "sleep",
    "withTimeout",
    "MIB",
]
