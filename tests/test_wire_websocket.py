"""
Tests for L{gostrelay.wire.websocket}: the data frames of a WebSocket relay
carrier after autobahn's opening handshake.

  - L{MaskTests}: the C masker and the integer fallback agree with the
    RFC's byte-by-byte XOR.
  - L{EncodeTests}: our frames as an independent RFC 6455 parser (the
    tests' own) and autobahn read them.
  - L{ReaderTests} (hypothesis): any stream of frames from the tests'
    encoder or from autobahn, split anywhere, gives the same payload
    bytes and control frames; each breach of RFC 6455 is an error with
    its close code, after the payloads before it.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import txaio
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire import websocket
from gostrelay.wire.websocket import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    ControlFrame,
    FrameReader,
    encodeData,
    mask,
)
from tests.support.websocket import BINARY, CLOSE, CONT, PING, PONG, TEXT, FrameParser, encodeFrame

KEY = b"\x11\x22\x33\x44"


def naiveMask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def readAll(reader: FrameReader, pieces: list[bytes]) -> tuple[bytes, list[ControlFrame]]:
    payload, controls = [], []
    for piece in pieces:
        for item in reader.feed(piece):
            if isinstance(item, ControlFrame):
                controls.append(item)
            else:
                payload.append(item)
    return b"".join(payload), controls


def openAutobahnServer(case: SynchronousTestCase, protocolClass: type) -> tuple[Any, StringTransport]:
    """
    An autobahn server protocol of C{protocolClass} past its opening
    handshake, on a L{StringTransport}.
    """
    factory = WebSocketServerFactory()
    factory.protocol = protocolClass
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    case.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
    return protocol, transport


class MaskTests(SynchronousTestCase):
    def test_agree(self) -> None:
        data = bytes(range(256)) * 300
        for size in list(range(0, 140)) + [4095, 4096, 32768, len(data)]:
            expected = naiveMask(data[:size], KEY)
            self.assertEqual(mask(data[:size], KEY), expected, size)
            buffer = bytearray(b"ab" + data[:size])
            websocket._maskByInteger(buffer, 2, size, KEY)
            self.assertEqual(buffer, b"ab" + expected, size)
            buffer = bytearray(b"ab" + data[:size] + b"cd")
            websocket.maskInto(buffer, 2, size, KEY)
            self.assertEqual(buffer, b"ab" + expected + b"cd", size)
            self.assertEqual(mask(memoryview(data)[:size], KEY), expected, size)

    def test_cInUse(self) -> None:
        """
        autobahn's NVX masker is installed here (a dependency's C code), and
        it is what L{mask} is: the integer fallback is ~20x slower.
        """
        self.assertIsNot(websocket.maskInto, websocket._maskByInteger)


class EncodeTests(SynchronousTestCase):
    def test_framesAsTheRFCReads(self) -> None:
        data = bytes(range(256)) * 400  # 100 KiB
        for masked in (True, False):
            frames = FrameParser().feed(encodeData(data, 32 * 1024, masked))
            self.assertEqual([len(f.payload) for f in frames], [32768] * 3 + [4096])
            self.assertEqual({(f.fin, f.rsv, f.opcode, f.masked) for f in frames}, {(True, 0, BINARY, masked)})
            self.assertEqual(b"".join(f.payload for f in frames), data)

    def test_freshKeys(self) -> None:
        """
        Each client frame has its own masking key (RFC 6455 5.3), from the
        given source of randomness.
        """
        asked: list[int] = []

        def keys(n: int) -> bytes:
            asked.append(n)
            return bytes(range(n))

        out = encodeData(b"x" * 10, 4, True, keys)
        self.assertEqual(asked, [12])
        # Frames of 2 + 4 + 4, 2 + 4 + 4 and 2 + 4 + 2 bytes: the keys at 2, 12, 22.
        self.assertEqual([out[2:6], out[12:16], out[22:26]], [b"\0\1\2\3", b"\4\5\6\7", b"\x08\x09\x0a\x0b"])
        self.assertEqual([f.payload for f in FrameParser().feed(out)], [b"xxxx", b"xxxx", b"xx"])

    def test_keysFromThePool(self) -> None:
        """
        By default the keys come from a pool of C{os.urandom} bytes drawn
        4 KiB at a time (one system call per thousand frames), each key
        taken once: consecutive frames, and writes, have different keys.
        """
        drawn: list[int] = []
        pool = websocket._RandomPool()

        def urandom(n: int) -> bytes:
            drawn.append(n)
            return b"".join(struct.pack(">I", i) for i in range(n // 4 + 1))[:n]

        self.patch(websocket.os, "urandom", urandom)
        keys = [pool.take(4) for _ in range(1024)]
        self.assertEqual(drawn, [4096])
        self.assertEqual(len(set(keys)), len(keys))
        pool.take(8)
        self.assertEqual(drawn, [4096, 4096])
        self.assertEqual(len(pool.take(5000)), 5000)  # more than a pool's worth at once
        self.assertEqual(drawn, [4096, 4096, 5000])
        first = encodeData(b"x" * 100, 32768, True)
        second = encodeData(b"x" * 100, 32768, True)
        self.assertNotEqual(first[2:6], second[2:6])

    def test_lengthEncodings(self) -> None:
        for size, head in ((125, b"\x82\x7d"), (126, b"\x82\x7e\x00\x7e"), (65535, b"\x82\x7e\xff\xff"),
                           (65536, b"\x82\x7f" + struct.pack(">Q", 65536))):
            out = encodeData(b"\0" * size, 1 << 20, False)
            self.assertEqual(out[: len(head)], head)
            self.assertEqual(len(out), len(head) + size)

    def test_autobahnReads(self) -> None:
        """
        autobahn (what GOST's peers and earlier gostrelay versions were
        tested against) reads our masked frames as the messages written.
        """
        self.patch(txaio.config, "loop", Clock())  # autobahn's handshake timers
        received: list[bytes] = []

        class Server(WebSocketServerProtocol):
            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                received.append(payload)

        protocol, transport = openAutobahnServer(self, Server)
        data = bytes(range(256)) * 160
        protocol.dataReceived(encodeData(data, 32 * 1024, True))
        self.assertEqual(received, [data[:32768], data[32768:]])
        protocol.connectionLost(Failure(ConnectionDone()))


class ReaderTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(
        messages=st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=3), max_size=5),
        controls=st.lists(st.sampled_from([PING, PONG]), max_size=5),
        masked=st.booleans(),
        cuts=st.lists(st.integers(min_value=0), max_size=8),
    )
    def test_anySplit(self, messages: list[list[bytes]], controls: list[int], masked: bool, cuts: list[int]) -> None:
        """
        Fragmented and whole messages with pings and pongs between
        fragments, split anywhere: the payloads in order, the control
        frames whole and in order.
        """
        stream, expectedControls = [], []
        key = KEY if masked else None
        for fragments in messages:
            for i, fragment in enumerate(fragments):
                opcode = BINARY if i == 0 else CONT
                stream.append(encodeFrame(opcode, fragment, fin=i == len(fragments) - 1, mask=key))
                if controls:
                    frame = encodeFrame(controls.pop(), b"ping!", mask=key)
                    stream.append(frame)
                    expectedControls.append(frame)
        data = b"".join(stream)
        reader = FrameReader(masked=masked, maxMessage=1 << 20)
        payload, got = readAll(reader, split(data, cuts))
        self.assertIsNone(reader.error)
        self.assertEqual(payload, b"".join(b"".join(m) for m in messages))
        self.assertEqual([c.raw for c in got], expectedControls)
        self.assertEqual([c.opcode for c in got], [f[0] & 0x0F for f in expectedControls])

    def test_autobahnFrames(self) -> None:
        """
        What autobahn writes as a client (masked) and as a server
        (unmasked), 7-, 16- and 64-bit lengths, reads as written.
        """
        sizes = [0, 1, 125, 126, 65535, 65536, 70000]
        payloads = [bytes([i]) * n for i, n in enumerate(sizes)]

        self.patch(txaio.config, "loop", Clock())  # autobahn's handshake timers
        server, serverTransport = openAutobahnServer(self, WebSocketServerProtocol)
        serverTransport.clear()

        clientFactory = WebSocketClientFactory("ws://x/")
        clientFactory.protocol = WebSocketClientProtocol
        client = clientFactory.buildProtocol(None)
        clientTransport = StringTransport()
        client.makeConnection(clientTransport)
        request = clientTransport.value()
        clientKey = [line.split(b": ", 1)[1] for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(clientKey + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        client.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        clientTransport.clear()

        for sender, transport, masked in ((client, clientTransport, True), (server, serverTransport, False)):
            for payload in payloads:
                sender.sendMessage(payload, isBinary=True)
            sender.sendPing(b"p")
            data = transport.value()
            reader = FrameReader(masked=masked, maxMessage=1 << 20)
            got, controls = readAll(reader, split(data, [7, 130, 70000, 140001]))
            self.assertIsNone(reader.error)
            self.assertEqual(got, b"".join(payloads))
            self.assertEqual([c.opcode for c in controls], [PING])
        for p in (client, server):
            p.connectionLost(Failure(ConnectionDone()))

    def test_textChecked(self) -> None:
        reader = FrameReader(masked=False, maxMessage=100)
        text = "héllo".encode()
        self.assertEqual(reader.feed(encodeFrame(TEXT, text[:2], fin=False) + encodeFrame(CONT, text[2:])), [text])
        self.assertEqual(reader.feed(encodeFrame(TEXT, b"")), [b""])
        reader = FrameReader(masked=False, maxMessage=100)
        self.assertEqual(reader.feed(encodeFrame(BINARY, b"ok") + encodeFrame(TEXT, b"\xff")), [b"ok"])
        self.assertEqual(reader.error.code if reader.error else None, CLOSE_INVALID_PAYLOAD)

    def test_errors(self) -> None:
        """
        Each breach of RFC 6455 that fails a connection: its close code;
        the payload before it is still returned, nothing after it is read.
        """
        good = encodeFrame(BINARY, b"before")
        cases: list[tuple[bool, bytes, int, str]] = [
            (False, bytes([0x82 | 0x40, 0]), CLOSE_PROTOCOL_ERROR, "reserved bits"),
            (True, encodeFrame(BINARY, b"x"), CLOSE_PROTOCOL_ERROR, "unmasked client-to-server"),
            (False, encodeFrame(BINARY, b"x", mask=KEY), CLOSE_PROTOCOL_ERROR, "masked server-to-client"),
            (False, encodeFrame(0x3, b"x"), CLOSE_PROTOCOL_ERROR, "data frame with reserved opcode 3"),
            (False, encodeFrame(0xB, b"x"), CLOSE_PROTOCOL_ERROR, "control frame with reserved opcode 11"),
            (False, encodeFrame(PING, b"x", fin=False), CLOSE_PROTOCOL_ERROR, "fragmented control"),
            (False, encodeFrame(PING, b"x" * 126), CLOSE_PROTOCOL_ERROR, "over 125"),
            (False, encodeFrame(CONT, b"x"), CLOSE_PROTOCOL_ERROR, "continuation frame outside"),
            (False, encodeFrame(BINARY, b"x", fin=False) + encodeFrame(BINARY, b"y"), CLOSE_PROTOCOL_ERROR, "inside a fragmented"),
            (False, b"\x82\x7e\x00\x7d" + b"x" * 125, CLOSE_PROTOCOL_ERROR, "shortest encoding"),
            (False, b"\x82\x7f" + struct.pack(">Q", 65535), CLOSE_PROTOCOL_ERROR, "shortest encoding"),
            (False, b"\x82\x7f" + struct.pack(">Q", 1 << 63), CLOSE_PROTOCOL_ERROR, "over 2^63"),
            (False, encodeFrame(BINARY, b"x" * 101), CLOSE_MESSAGE_TOO_BIG, "larger than 100 bytes"),
            (False, encodeFrame(BINARY, b"x" * 60, fin=False) + encodeFrame(CONT, b"x" * 41), CLOSE_MESSAGE_TOO_BIG,
             "larger than 100 bytes"),
        ]
        for masked, bad, code, reason in cases:
            key = KEY if masked else None
            reader = FrameReader(masked=masked, maxMessage=100)
            out = reader.feed(encodeFrame(BINARY, b"before", mask=key) + bad + good)
            self.assertEqual(reader.error.code if reader.error else None, code, reason)
            assert reader.error is not None
            self.assertIn(reason, reader.error.reason)
            self.assertTrue(b"".join(x for x in out if isinstance(x, bytes)).startswith(b"before"), reason)
            self.assertNotIn(b"before" * 2, b"".join(x for x in out if isinstance(x, bytes)))
            self.assertEqual(reader.feed(good), [], reason)

    def test_capHitsExactly(self) -> None:
        """
        A message of exactly the cap passes, in one frame or fragments; a
        frame over it is refused from its header (before its payload).
        """
        reader = FrameReader(masked=False, maxMessage=100)
        self.assertEqual(reader.feed(encodeFrame(BINARY, b"a" * 100)), [b"a" * 100])
        out = reader.feed(encodeFrame(BINARY, b"b" * 50, fin=False) + encodeFrame(CONT, b"c" * 50))
        self.assertEqual(b"".join(x for x in out if isinstance(x, bytes)), b"b" * 50 + b"c" * 50)
        self.assertIsNone(reader.error)
        self.assertEqual(reader.feed(encodeFrame(BINARY, b"d" * 101)[:4]), [])
        self.assertEqual(reader.error.code if reader.error else None, CLOSE_MESSAGE_TOO_BIG)

    def test_closeFrameWhole(self) -> None:
        close = encodeFrame(CLOSE, struct.pack(">H", 1000) + b"bye", mask=KEY)
        reader = FrameReader(masked=True, maxMessage=100)
        self.assertEqual(reader.feed(close[:3]), [])
        (frame,) = reader.feed(close[3:])
        self.assertEqual(frame, ControlFrame(CLOSE, close))

    def test_pendingHeaderBounded(self) -> None:
        """
        What is held between reads is at most one header or one control
        frame (14 + 125 bytes): a payload is never held.
        """
        reader = FrameReader(masked=True, maxMessage=1 << 20)
        frame = encodeFrame(BINARY, b"z" * 70000, mask=KEY)
        held: list[int] = []
        for i in range(0, len(frame), 9):
            reader.feed(frame[i : i + 9])
            held.append(len(reader._pending))
        self.assertLessEqual(max(held), 14)
        self.assertIsNone(reader.error)

    def test_anyInputNoCrash(self) -> None:
        @settings(max_examples=200, deadline=None)
        @given(st.binary(max_size=400), st.booleans())
        def check(data: bytes, masked: bool) -> None:
            reader = FrameReader(masked=masked, maxMessage=200)
            total = 0
            for item in reader.feed(data):
                if isinstance(item, bytes):
                    total += len(item)
            self.assertLessEqual(total, len(data))

        check()
