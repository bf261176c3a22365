"""
L{gostrelay.testing.MemoryRelay}, used the way docs/testing.md tells users
to use it in their own trial tests.

The first test case is the documentation's example, unchanged: if it stops
passing, the page is wrong.
"""

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.errors import RelayRefused
from gostrelay.testing import MemoryRelay
from gostrelay.wire.relay import Status

# -- docs/testing.md, "A first test" (keep the two in step)


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Accumulate(Protocol):
    received = b""

    def dataReceived(self, data):
        self.received += data


class EchoThroughRelay(SynchronousTestCase):
    def test_echo(self):
        relay = MemoryRelay({"example.com:7": Factory.forProtocol(Echo)})
        client = Accumulate()
        connectProtocol(relay.clientEndpoint("example.com", 7), client)
        relay.flush()
        client.transport.write(b"hi")
        relay.flush()
        self.assertEqual(client.received, b"hi")


# -- more of what the page promises


class Banner(Protocol):
    """
    A server that speaks first (SMTP, FTP, MySQL, SSH...).
    """

    def connectionMade(self):
        self.transport.write(b"220 smtp.example ready\r\n")


class Recorder(Protocol):
    """
    Keeps what arrived and how the connection ended.
    """

    def __init__(self):
        self.received = b""
        self.reason = None

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.reason = reason


def targets():
    return {
        "example.com:7": Factory.forProtocol(Echo),
        "smtp.example:25": Factory.forProtocol(Banner),
    }


class AuthenticationTests(SynchronousTestCase):
    """
    C{MemoryRelay(users=...)}: the relay server checks credentials as a real
    one does.
    """

    def setUp(self):
        self.relay = MemoryRelay(targets(), users={"alice": "s3cret"})

    def test_rightPassword(self):
        d = connectProtocol(self.relay.clientEndpoint("example.com", 7, "alice", "s3cret", nodelay=True), Recorder())
        self.relay.flush()
        client = self.successResultOf(d)
        client.transport.write(b"ping")
        self.relay.flush()
        self.assertEqual(client.received, b"ping")

    def test_wrongPasswordRefused(self):
        """
        With C{nodelay=True} the refusal fails the connection attempt with
        L{RelayRefused} carrying the relay status.
        """
        d = connectProtocol(self.relay.clientEndpoint("example.com", 7, "alice", "guess", nodelay=True), Recorder())
        self.relay.flush()
        failure = self.failureResultOf(d, RelayRefused)
        self.assertEqual(failure.value.status, Status.UNAUTHORIZED)

    def test_noCredentialsRefused(self):
        d = connectProtocol(self.relay.clientEndpoint("example.com", 7, nodelay=True), Recorder())
        self.relay.flush()
        self.assertEqual(self.failureResultOf(d, RelayRefused).value.status, Status.UNAUTHORIZED)

    def test_refusedInDefaultMode(self):
        """
        With C{nodelay=False} (the default) the application is connected at
        once, so a refusal shows up as the connection closing with nothing
        received.
        """
        client = Recorder()
        d = connectProtocol(self.relay.clientEndpoint("example.com", 7, "alice", "guess"), client)
        self.assertIs(self.successResultOf(d), client)
        client.transport.write(b"ping")
        self.relay.flush()
        self.assertEqual(client.received, b"")
        self.assertIsNotNone(client.reason)


class TargetTests(SynchronousTestCase):
    def test_unknownTarget(self):
        """
        A target missing from the table is refused as a closed port is: the
        relay server answers 0x07 (Network Unreachable).
        """
        relay = MemoryRelay(targets())
        d = connectProtocol(relay.clientEndpoint("nowhere.example", 9, nodelay=True), Recorder())
        relay.flush()
        failure = self.failureResultOf(d, RelayRefused)
        self.assertEqual(failure.value.status, Status.NETWORK_UNREACHABLE)
        self.assertEqual(failure.value.target, "nowhere.example:9")

    def test_forwardMode(self):
        """
        A relay URL with a target is relay forward mode: whatever the client
        asks for, it reaches the server's own target.
        """
        relay = MemoryRelay(targets(), url="relay://127.0.0.1:8420/example.com:7")
        client = Recorder()
        connectProtocol(relay.clientEndpoint("ignored.example", 1), client)
        relay.flush()
        client.transport.write(b"forwarded")
        relay.flush()
        self.assertEqual(client.received, b"forwarded")


class NodelayTests(SynchronousTestCase):
    """
    When the relay request goes and when the application gets the
    connection, with and without C{nodelay}.
    """

    def test_nodelayWaitsForTheAnswer(self):
        relay = MemoryRelay(targets())
        d = connectProtocol(relay.clientEndpoint("example.com", 7, nodelay=True), Recorder())
        self.assertNoResult(d)
        relay.flush()
        self.successResultOf(d)

    def test_defaultConnectsAtOnce(self):
        relay = MemoryRelay(targets())
        d = connectProtocol(relay.clientEndpoint("example.com", 7), Recorder())
        self.successResultOf(d)

    def test_serverSpeaksFirstDefaultMode(self):
        """
        In the default mode the request rides on the application's first
        bytes; an application that says nothing still gets the banner once
        C{quietDelay} (20 ms) has passed.
        """
        relay = MemoryRelay(targets())
        client = Recorder()
        connectProtocol(relay.clientEndpoint("smtp.example", 25), client)
        relay.flush()
        self.assertEqual(client.received, b"")
        relay.flush(advance=0.02)
        self.assertEqual(client.received, b"220 smtp.example ready\r\n")

    def test_serverSpeaksFirstNodelay(self):
        relay = MemoryRelay(targets())
        client = Recorder()
        connectProtocol(relay.clientEndpoint("smtp.example", 25, nodelay=True), client)
        relay.flush()
        self.assertEqual(client.received, b"220 smtp.example ready\r\n")


class ServerOptionTests(SynchronousTestCase):
    def test_idleTimeout(self):
        """
        Relay server options go in the URL; time is the relay's fake clock,
        moved by C{flush(advance=...)}.
        """
        relay = MemoryRelay(targets(), url="relay://127.0.0.1:8420?idleTimeout=30s")
        client = Recorder()
        connectProtocol(relay.clientEndpoint("example.com", 7), client)
        relay.flush()
        client.transport.write(b"x")
        relay.flush()  # deliver first: flush(advance=...) moves the clock, then the bytes
        relay.flush(advance=29)
        self.assertIsNone(client.reason)
        relay.flush(advance=2)
        self.assertIsNotNone(client.reason)

    def test_rawBadVersion(self):
        """
        C{serverEndpoint()} reaches the relay server itself: a request that
        is not version 1 is closed without a reply, as GOST does.
        """
        relay = MemoryRelay(targets())
        raw = Recorder()
        connectProtocol(relay.serverEndpoint(), raw)
        relay.flush()
        raw.transport.write(b"GET / HTTP/1.0\r\n\r\n")
        relay.flush()
        self.assertEqual(raw.received, b"")
        self.assertIsNotNone(raw.reason)

    def test_rawRequestBytes(self):
        """
        The bytes are GOST's wire: a hand-made CONNECT gets C{01 00 00 00}.
        """
        from gostrelay.wire.relay import connectRequest

        relay = MemoryRelay(targets())
        raw = Recorder()
        connectProtocol(relay.serverEndpoint(), raw)
        relay.flush()
        raw.transport.write(connectRequest("example.com:7").encode() + b"abc")
        relay.flush()
        self.assertEqual(raw.received, b"\x01\x00\x00\x00abc")


# -- docs/testing.md, "Testing your own code" (keep the two in step)


class _FirstLine(LineReceiver):
    def __init__(self):
        self.line = Deferred()

    def lineReceived(self, line):
        self.line.callback(line)
        self.transport.loseConnection()


def fetchBanner(endpoint):
    """
    Your code: connect to C{endpoint} and return the server's first line.
    """
    protocol = _FirstLine()
    return connectProtocol(endpoint, protocol).addCallback(lambda _: protocol.line)


class FetchBannerTests(SynchronousTestCase):
    def test_banner(self):
        relay = MemoryRelay({"smtp.example:25": Factory.forProtocol(Banner)})
        d = fetchBanner(relay.clientEndpoint("smtp.example", 25))
        relay.flush(advance=0.02)  # the relay request goes alone after quietDelay
        self.assertEqual(self.successResultOf(d), b"220 smtp.example ready")

    def test_unreachable(self):
        relay = MemoryRelay({})
        d = fetchBanner(relay.clientEndpoint("smtp.example", 25, nodelay=True))
        relay.flush()
        self.failureResultOf(d, RelayRefused)
