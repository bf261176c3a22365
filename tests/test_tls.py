"""
The tls data channel (spec-transports.md section 2, spec-relay.md section
12): GOST's default certificate, the server's certificate choice and mutual
TLS, the client's verification matrix and SNI, and the relay protocol over
TLS, in process, over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import os
import stat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from twisted.trial import unittest

from gostrelay.config.model import TLSConfig
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.endpoints import chainEndpoint
from gostrelay.transports.tls import (
    AUTO_CERT,
    AUTO_KEY,
    TLSListener,
    clientCreator,
    defaultCertificate,
    generateCertificate,
    serverContextFactory,
)
from tests.support.cases import MIB, TransportTestCase
from tests.support.logs import captureLogs
from tests.support.pki import PKI, isolate
from tests.support.reactor import sleep, withTimeout
from tests.support.targets import Collector

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
        logs = captureLogs(self)
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
        self.assertIn("wrong name", logs.text)

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

