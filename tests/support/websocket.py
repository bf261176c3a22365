"""
A raw WebSocket peer written from RFC 6455 for the tests (L{encodeFrame},
L{FrameParser}, a hand-made server and client), independent of autobahn,
and a plain application protocol to run over WebSocket streams.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def acceptFor(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def encodeFrame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    maskBit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, maskBit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, maskBit | 126, n)
    else:
        header = struct.pack("!BBQ", first, maskBit | 127, n)
    if mask is None:
        return header + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, mask)
    return header + mask + masked


def _mask(payload: bytes, mask: bytes) -> bytes:
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")


class Frame:
    def __init__(self, fin: bool, rsv: int, opcode: int, masked: bool, payload: bytes) -> None:
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    def __repr__(self) -> str:
        return f"Frame(fin={self.fin}, rsv={self.rsv}, op={self.opcode}, masked={self.masked}, {self.payload[:20]!r}..{len(self.payload)})"


class FrameParser:
    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while True:
            b = self.buffer
            if len(b) < 2:
                break
            fin, rsv, opcode = bool(b[0] & 0x80), (b[0] >> 4) & 7, b[0] & 0x0F
            masked, n = bool(b[1] & 0x80), b[1] & 0x7F
            offset = 2
            if n == 126:
                if len(b) < 4:
                    break
                n = struct.unpack("!H", b[2:4])[0]
                offset = 4
            elif n == 127:
                if len(b) < 10:
                    break
                n = struct.unpack("!Q", b[2:10])[0]
                offset = 10
            mask = b""
            if masked:
                if len(b) < offset + 4:
                    break
                mask = b[offset : offset + 4]
                offset += 4
            if len(b) < offset + n:
                break
            payload = b[offset : offset + n]
            if masked:
                payload = _mask(payload, mask)
            frames.append(Frame(fin, rsv, opcode, masked, payload))
            self.buffer = b[offset + n :]
        return frames


def messages(frames: list[Frame]) -> list[tuple[int, bytes]]:
    """
    Data messages (opcode, payload) reassembled from C{frames} (control
    frames skipped).
    """
    result = []
    current: list[Any] | None = None
    for f in frames:
        if f.opcode >= 8:
            continue
        if f.opcode != CONT:
            current = [f.opcode, f.payload]
        else:
            assert current is not None
            current[1] += f.payload
        if f.fin:
            assert current is not None
            result.append((current[0], current[1]))
            current = None
    return result


def parseHTTP(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


class RawServer(Protocol):
    """
    A WebSocket server by hand: records the upgrade request, answers it
    (C{factory.answer}: "101", "101-bad-accept", "404", or None to hold),
    then records every frame; answers pings with pongs when
    C{factory.pong}.
    """

    def connectionMade(self) -> None:
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.head: bytes | None = None
        self.buffer = b""
        self.early = b""  # bytes after the request, before we answered
        self.answered = False
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.head is None:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, _, rest = self.buffer.partition(b"\r\n\r\n")
            self.requestLine, self.headers = parseHTTP(self.head)
            if self.factory.answer is not None:  # type: ignore[attr-defined]
                self.answer(self.factory.answer)  # type: ignore[attr-defined]
            data = rest
            if not data:
                return
        if not self.answered:
            self.early += data
            return
        for frame in self.parser.feed(data):
            self.frames.append(frame)
            if frame.opcode == PING and self.factory.pong:  # type: ignore[attr-defined]
                self.transport.write(encodeFrame(PONG, frame.payload))  # type: ignore[union-attr]

    def answer(self, kind: str) -> None:
        self.answered = True
        key = header(self.headers, "Sec-WebSocket-Key")[0].encode()
        accept = acceptFor(key)
        if kind == "101-bad-accept":
            accept = acceptFor(b"not the key")
        if kind.startswith("101"):
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
        if self.early:
            early, self.early = self.early, b""
            self.dataReceived(early)
            self.early = early

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.transport.write(encodeFrame(opcode, payload, fin))  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class RawServerFactory(Factory):
    protocol = RawServer
    noisy = False

    def __init__(self, answer: str | None = "101", pong: bool = True) -> None:
        self.answer = answer
        self.pong = pong
        self.connections: list[RawServer] = []
        self.open: set[RawServer] = set()

    def buildProtocol(self, addr: Any) -> Any:
        p = super().buildProtocol(addr)
        self.open.add(p)
        return p


class RawClient(Protocol):
    """
    A WebSocket client by hand: sends C{request} at once, then parses the
    response head and every frame.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buffer = b""
        self.head: bytes | None = None
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self.lost: Failure | None = None
        self.done: defer.Deferred[RawClient] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.head is None:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, _, data = self.buffer.partition(b"\r\n\r\n")
            self.statusLine, self.headers = parseHTTP(self.head)
        self.frames.extend(self.parser.feed(data))

    @property
    def status(self) -> int:
        return int(self.statusLine.split()[1])

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.transport.write(encodeFrame(opcode, payload, fin, os.urandom(4)))  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason
        self.done.callback(self)


def upgradeRequest(path: str = "/ws", host: str = "127.0.0.1", extra: str = "", method: str = "GET", version: str = "13") -> tuple[bytes, bytes]:
    """
    A client upgrade request as gorilla writes it; returns C{(request,
    key)}.
    """
    key = base64.b64encode(os.urandom(16))
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: {version}\r\n"
        f"Upgrade: websocket\r\n{extra}\r\n"
    ).encode()
    return request, key


class App(Protocol):
    """
    The application on a WebSocket stream: writes C{writes} one by one
    when connected, records what arrives and why it ended.
    """

    def __init__(self, writes: tuple[bytes, ...] = (), echo: bool = False, closeAfterWrites: bool = False) -> None:
        self.writes = writes
        self.echo = echo
        self.closeAfterWrites = closeAfterWrites
        self.data = bytearray()
        self.reason: Failure | None = None
        self.done: defer.Deferred[App] = defer.Deferred()
        self.connected = False

    def connectionMade(self) -> None:
        self.connected = True
        for w in self.writes:
            self.transport.write(w)  # type: ignore[union-attr]
        if self.closeAfterWrites:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.echo:
            self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.done.callback(self)


class AppFactory(Factory):
    noisy = False

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.apps: list[App] = []

    @property
    def open(self) -> list[App]:
        """
        The applications whose connection has not ended (aborted at cleanup
        by L{tests.support.cases.ReactorTestCase.listen}).
        """
        return [app for app in self.apps if app.reason is None]

    def buildProtocol(self, addr: Any) -> App:
        app = App(**self.kwargs)
        app.factory = self
        self.apps.append(app)
        return app
