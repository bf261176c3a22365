"""
Tests for the bulk path and session resumption of
L{gostrelay.transports.tls}: L{BulkTLSProtocol} carries every byte in
order both ways, in writes of any size, and a client connection creator
resumes the server's session on its next connection.
"""

from __future__ import annotations

import os
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.trial import unittest
from zope.interface import directlyProvides, providedBy

from gostrelay.config.model import TLSConfig
from gostrelay.transports import tls as tlsModule
from gostrelay.transports.tls import (
    BulkTLSProtocol,
    TLSServerEndpoint,
    _GostClientCreator,
    _TLSClientEndpoint,
    generateCertificate,
    serverContextFactory,
)
from tests.support.reactor import withTimeout
from tests.support.targets import Collector, EchoFactory


def _reused(connection: SSL.Connection) -> bool:
    # pyOpenSSL has no session_reused(); OpenSSL's own answer.
    return bool(SSL._lib.SSL_session_reused(connection._ssl))  # type: ignore[attr-defined]


class BulkTLSTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        certificate, key = generateCertificate()
        base = self.mktemp()
        os.makedirs(base)
        certFile, keyFile = os.path.join(base, "cert.pem"), os.path.join(base, "key.pem")
        with open(certFile, "wb") as f:
            f.write(certificate)
        with open(keyFile, "wb") as f:
            f.write(key)
        self.echo = EchoFactory()
        listener = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            serverContextFactory(TLSConfig(certFile=certFile, keyFile=keyFile), "test"),
        )
        self.port = yield listener.listen(self.echo)
        self.addCleanup(self.port.stopListening)
        self.creator = _GostClientCreator("", None)

    @defer.inlineCallbacks
    def exchange(self, payload: bytes, chunks: int = 1):  # type: ignore[no-untyped-def]
        endpoint = _TLSClientEndpoint(self.creator, TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port))
        client = Collector(b"", expect=len(payload) * chunks)
        yield withTimeout(connectProtocol(endpoint, client), 10, "connect")
        tls: Any = client.transport
        self.assertIsInstance(tls, BulkTLSProtocol)
        for _ in range(chunks):
            tls.write(payload)
        yield withTimeout(client.done, 20, "exchange")
        return client, tls

    @defer.inlineCallbacks
    def test_bytesInOrder(self):  # type: ignore[no-untyped-def]
        """
        Writes of every size (one byte, a record, many records, not a
        multiple of a record) come back complete and in order.
        """
        for size, chunks in ((1, 3), (16384, 2), (100000, 3), (1 << 20, 2)):
            payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
            client, _ = yield self.exchange(payload, chunks)
            self.assertEqual(bytes(client.data), payload * chunks, size)

    @defer.inlineCallbacks
    def test_resumesSession(self):  # type: ignore[no-untyped-def]
        """
        The first connection does a full handshake and keeps the session
        the server's ticket carries; the next one resumes it (no
        certificate to send, sign or check).
        """
        _, first = yield self.exchange(b"hello")
        self.assertFalse(_reused(first._tlsConnection))
        self.assertIsNotNone(self.creator.session)
        _, second = yield self.exchange(b"again")
        self.assertTrue(_reused(second._tlsConnection), "the second connection did a full handshake")

    @defer.inlineCallbacks
    def test_oneCallPerWrite(self):  # type: ignore[no-untyped-def]
        """
        Partial writes are off on both sides' contexts: a 64 KiB write is
        one C{SSL_write} (all four records), one read from the memory BIO
        and one write to the socket.
        """
        endpoint = _TLSClientEndpoint(self.creator, TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port))
        payload = os.urandom(1 << 16)
        client = Collector(b"", expect=len(payload) * 2)
        yield withTimeout(connectProtocol(endpoint, client), 10, "connect")
        tls: Any = client.transport
        tls.write(b"x" * (len(payload)))  # the handshake is over once this is echoed
        while len(client.data) < len(payload):
            yield withTimeout(_later(), 5, "echo")
        calls: list[int] = []
        socketWrites: list[int] = []
        self.patch(tlsModule, "_lib", _CountingLib(tlsModule._lib, calls))
        carrier = tls.transport
        writeSomeData = carrier.writeSomeData
        carrier.writeSomeData = lambda data: socketWrites.append(len(data)) or writeSomeData(data)
        self.addCleanup(delattr, carrier, "writeSomeData")
        tls.write(payload)
        self.assertEqual(calls, [len(payload)])
        self.assertEqual(len(socketWrites), 1)
        self.assertGreater(socketWrites[0], len(payload))
        yield withTimeout(client.done, 20, "exchange")
        self.assertEqual(bytes(client.data[len(payload):]), payload)

    @defer.inlineCallbacks
    def test_handshakeWithoutExceptions(self):  # type: ignore[no-untyped-def]
        """
        A connection's life, a full handshake and then a resumed one, with
        bytes written before the handshake is over (as a relay request is):
        the handshake's unfinished steps and the held-back write are told
        without pyOpenSSL raising WantReadError on either side, and the
        bytes arrive.
        """
        raised: list[int] = []
        original = SSL.Connection._raise_ssl_error

        def counting(connection: Any, ssl: Any, result: int) -> None:
            try:
                original(connection, ssl, result)
            except SSL.WantReadError:
                raised.append(result)
                raise

        self.patch(SSL.Connection, "_raise_ssl_error", counting)
        for payload in (b"first", b"resumed"):
            endpoint = _TLSClientEndpoint(self.creator, TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port))
            client = Collector(payload)
            yield withTimeout(connectProtocol(endpoint, client), 10, "connect")
            yield withTimeout(client.done, 10, "exchange")
            self.assertEqual(bytes(client.data), payload)
        self.assertTrue(_reused(client.transport._tlsConnection))
        self.assertEqual(raised, [])

    @defer.inlineCallbacks
    def test_interfacesOfTheTransport(self):  # type: ignore[no-untyped-def]
        """
        The TLS protocol declares what Twisted's own would over the same
        transport (its declaration is worked out once per transport type).
        """
        for _ in range(2):
            client, tls = yield self.exchange(b"hello")
            expected: Any = object.__new__(BulkTLSProtocol)
            # What Twisted's makeConnection declares, on a bare one (its
            # loop over the interfaces, then ProtocolWrapper's, which wins):
            directlyProvides(expected, providedBy(tls.transport))
            self.assertEqual(list(providedBy(tls)), list(providedBy(expected)))


class _CountingLib:
    """
    OpenSSL's cffi library as the TLS protocol calls it, noting the size of
    every C{SSL_write}.
    """

    def __init__(self, lib: Any, calls: list[int]) -> None:
        self._lib = lib
        self._calls = calls

    def SSL_write(self, ssl: Any, data: Any, size: int) -> int:
        self._calls.append(size)
        result: int = self._lib.SSL_write(ssl, data, size)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


def _later() -> defer.Deferred[None]:
    from twisted.internet import task

    return task.deferLater(reactor, 0.01, lambda: None)
