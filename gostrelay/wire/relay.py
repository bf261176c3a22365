"""
The GOST relay wire format (spec-relay.md section 1), sans-IO.

A request is C{VER CMD FLEN FEATURES}, a response C{VER STATUS FLEN FEATURES};
features are C{TYPE LEN DATA} records.  This module turns bytes into values
and values into bytes and knows nothing of transports, so the golden vectors
and hypothesis can exercise it directly.

Decoding follows current GOST (relay >= v0.6.1): unknown feature types are
kept as L{OpaqueFeature} and ignored by the handler; a known feature whose
data is too short, or a feature running past the end of the feature area, is
a L{RelayDecodeError} (GOST's answer to that is a close without a reply).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Callable, Union

from gostrelay.wire.address import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    AddressError,
    atypeForHost,
    decodeSocksAddress,
    encodeSocksAddress,
    joinHostPort,
    splitHostPort,
)

VERSION = 0x01

HEADER_SIZE = 4
MAX_FEATURES_LENGTH = 0xFFFF

#: High bit of the command byte: a UDP-oriented request (deprecated in GOST
#: in favour of the Network feature, but still sent and still honoured).
FLAG_UDP = 0x80
COMMAND_MASK = 0x0F


class Command(enum.IntEnum):
    """
    The low nibble of the command byte.  C{0} is served like CONNECT.
    """

    CONNECT = 0x01
    BIND = 0x02
    ASSOCIATE = 0x03


class Status(enum.IntEnum):
    """
    Response status codes (spec-relay.md 1.5).
    """

    OK = 0x00
    BAD_REQUEST = 0x01
    UNAUTHORIZED = 0x02
    FORBIDDEN = 0x03
    TIMEOUT = 0x04
    SERVICE_UNAVAILABLE = 0x05
    HOST_UNREACHABLE = 0x06
    NETWORK_UNREACHABLE = 0x07
    INTERNAL_SERVER_ERROR = 0x08


#: The texts GOST's client uses for each status in its error messages.
STATUS_TEXT = {
    Status.OK: "",
    Status.BAD_REQUEST: "Bad Request",
    Status.UNAUTHORIZED: "Unauthorized",
    Status.FORBIDDEN: "Forbidden",
    Status.TIMEOUT: "Timeout",
    Status.SERVICE_UNAVAILABLE: "Service Unavailable",
    Status.HOST_UNREACHABLE: "Host Unreachable",
    Status.NETWORK_UNREACHABLE: "Network Unreachable",
    Status.INTERNAL_SERVER_ERROR: "Internal Server Error",
}


def statusText(status: int) -> str:
    """
    The name GOST gives C{status}, or C{"status 0xNN"} for codes it does not know.
    """
    try:
        return STATUS_TEXT[Status(status)] or "OK"
    except ValueError:
        return f"status 0x{status:02x}"


class FeatureType(enum.IntEnum):
    USER_AUTH = 0x01
    ADDR = 0x02
    TUNNEL = 0x03
    NETWORK = 0x04


class Network(enum.IntEnum):
    """
    Values of the Network feature.  Anything else is treated as TCP.
    """

    TCP = 0x0000
    UDP = 0x0001
    IP = 0x0002
    UNIX = 0x0010
    SERIAL = 0x0011


NETWORK_NAMES = {
    Network.TCP: "tcp",
    Network.UDP: "udp",
    Network.IP: "ip",
    Network.UNIX: "unix",
    Network.SERIAL: "serial",
}


def networkName(value: int) -> str:
    try:
        return NETWORK_NAMES[Network(value)]
    except ValueError:
        return "tcp"


class RelayDecodeError(ValueError):
    """
    The bytes are not a valid relay request or response.
    """


class RelayEncodeError(ValueError):
    """
    The values cannot be encoded (a field is longer than the format allows).
    """


def _text(raw: bytes) -> str:
    # GOST treats these fields as Go strings (bytes); surrogateescape keeps any
    # byte sequence round-trippable through str.
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class UserAuthFeature:
    username: str
    password: str

    type = FeatureType.USER_AUTH

    def encodeData(self) -> bytes:
        try:
            user, password = _raw(self.username), _raw(self.password)
        except UnicodeEncodeError as e:
            raise RelayEncodeError(f"username or password cannot be encoded: {e}") from None
        if len(user) > 0xFF or len(password) > 0xFF:
            raise RelayEncodeError("username and password are limited to 255 bytes")
        return bytes([len(user)]) + user + bytes([len(password)]) + password

    @classmethod
    def decodeData(cls, data: bytes) -> UserAuthFeature:
        if len(data) < 2:
            raise RelayDecodeError("short user-auth feature")
        ulen = data[0]
        if 1 + ulen + 1 > len(data):
            raise RelayDecodeError("user-auth username runs past the feature")
        plen = data[1 + ulen]
        if 2 + ulen + plen > len(data):
            raise RelayDecodeError("user-auth password runs past the feature")
        return cls(_text(data[1 : 1 + ulen]), _text(data[2 + ulen : 2 + ulen + plen]))


@dataclass(frozen=True)
class AddrFeature:
    """
    A host and port.  C{atype} records the encoding (IPv4, domain, IPv6) so
    that a decoded feature encodes back to the same bytes; L{fromHostPort}
    chooses it the way GOST's encoder does.
    """

    host: str
    port: int
    atype: int = ATYP_DOMAIN

    type = FeatureType.ADDR

    @classmethod
    def fromHostPort(cls, host: str, port: int) -> AddrFeature:
        atype = atypeForHost(host)
        if atype == ATYP_IPV4:
            host = str(ipaddress.ip_address(host.strip("[]")))
            mapped = getattr(ipaddress.ip_address(host), "ipv4_mapped", None)
            if mapped is not None:
                host = str(mapped)
        elif atype == ATYP_IPV6:
            host = str(ipaddress.ip_address(host.strip("[]")))
        return cls(host, port, atype)

    @classmethod
    def fromAddress(cls, address: str) -> AddrFeature:
        """
        Parse C{"host:port"} as GOST's C{ParseFrom} does: no port means port
        0, an empty host is a zero-length domain.
        """
        host, port = splitHostPort(address)
        return cls.fromHostPort(host, port)

    @property
    def address(self) -> str:
        return joinHostPort(self.host, self.port)

    def encodeData(self) -> bytes:
        try:
            return encodeSocksAddress(self.atype, self.host, self.port)
        except AddressError as e:
            raise RelayEncodeError(str(e)) from None

    @classmethod
    def decodeData(cls, data: bytes) -> AddrFeature:
        if len(data) < 4:
            raise RelayDecodeError("short address feature")
        try:
            atype, host, port, _ = decodeSocksAddress(data)
        except AddressError as e:
            raise RelayDecodeError(str(e)) from None
        return cls(host, port, atype)


@dataclass(frozen=True)
class TunnelFeature:
    """
    A tunnel identifier.  The relay handler ignores it; we keep the bytes.
    Current GOST wants 20 bytes, older GOST 16: we accept 16 or more.
    """

    raw: bytes

    type = FeatureType.TUNNEL

    def encodeData(self) -> bytes:
        return self.raw

    @classmethod
    def decodeData(cls, data: bytes) -> TunnelFeature:
        if len(data) < 16:
            raise RelayDecodeError("short tunnel feature")
        return cls(bytes(data))


@dataclass(frozen=True)
class NetworkFeature:
    network: int

    type = FeatureType.NETWORK

    @property
    def name(self) -> str:
        return networkName(self.network)

    def encodeData(self) -> bytes:
        return struct.pack(">H", self.network)

    @classmethod
    def decodeData(cls, data: bytes) -> NetworkFeature:
        if len(data) < 2:
            raise RelayDecodeError("short network feature")
        return cls(struct.unpack_from(">H", data)[0])


@dataclass(frozen=True)
class OpaqueFeature:
    """
    A feature type this codec does not know, kept verbatim.
    """

    featureType: int
    raw: bytes

    @property
    def type(self) -> int:  # type: ignore[override]
        return self.featureType

    def encodeData(self) -> bytes:
        return self.raw


Feature = Union[UserAuthFeature, AddrFeature, TunnelFeature, NetworkFeature, OpaqueFeature]

_DECODERS: dict[int, Callable[[bytes], Feature]] = {
    FeatureType.USER_AUTH: UserAuthFeature.decodeData,
    FeatureType.ADDR: AddrFeature.decodeData,
    FeatureType.TUNNEL: TunnelFeature.decodeData,
    FeatureType.NETWORK: NetworkFeature.decodeData,
}


def encodeFeatures(features: tuple[Feature, ...] | list[Feature]) -> bytes:
    parts = []
    for feature in features:
        data = feature.encodeData()
        if len(data) > 0xFFFF:
            raise RelayEncodeError("feature longer than 65535 bytes")
        parts.append(struct.pack(">BH", int(feature.type), len(data)))
        parts.append(data)
    body = b"".join(parts)
    if len(body) > MAX_FEATURES_LENGTH:
        raise RelayEncodeError("features longer than 65535 bytes")
    return body


def decodeFeatures(body: bytes) -> tuple[Feature, ...]:
    features: list[Feature] = []
    offset = 0
    end = len(body)
    while offset < end:
        if end - offset < 3:
            raise RelayDecodeError("feature header runs past the feature area")
        ftype, flen = struct.unpack_from(">BH", body, offset)
        offset += 3
        if end - offset < flen:
            raise RelayDecodeError("feature data runs past the feature area")
        data = body[offset : offset + flen]
        offset += flen
        decoder = _DECODERS.get(ftype)
        if decoder is None:
            features.append(OpaqueFeature(ftype, bytes(data)))
        else:
            features.append(decoder(bytes(data)))
    return tuple(features)


def _last(features: tuple[Feature, ...], kind: type) -> object | None:
    found = None
    for feature in features:
        if isinstance(feature, kind):
            found = feature
    return found


@dataclass(frozen=True)
class Request:
    """
    A relay request.  C{cmd} is the whole command byte (flags included).
    """

    cmd: int
    features: tuple[Feature, ...] = ()
    version: int = VERSION

    @property
    def command(self) -> int:
        return self.cmd & COMMAND_MASK

    @property
    def userAuth(self) -> UserAuthFeature | None:
        """The last UserAuth feature: GOST's handler keeps the last one."""
        return _last(self.features, UserAuthFeature)  # type: ignore[return-value]

    @property
    def addr(self) -> AddrFeature | None:
        return _last(self.features, AddrFeature)  # type: ignore[return-value]

    @property
    def network(self) -> str:
        """
        The network the request asks for: C{udp} when the FUDP flag is set,
        whatever the Network feature says; else the last Network feature's;
        else C{tcp}.
        """
        if self.cmd & FLAG_UDP:
            return "udp"
        feature = _last(self.features, NetworkFeature)
        return feature.name if feature is not None else "tcp"  # type: ignore[attr-defined]

    def encode(self) -> bytes:
        body = encodeFeatures(self.features)
        return struct.pack(">BBH", self.version, self.cmd, len(body)) + body


@dataclass(frozen=True)
class Response:
    status: int
    features: tuple[Feature, ...] = ()
    version: int = VERSION

    @property
    def addr(self) -> AddrFeature | None:
        """The first Addr feature (GOST reads the first as the peer)."""
        for feature in self.features:
            if isinstance(feature, AddrFeature):
                return feature
        return None

    def encode(self) -> bytes:
        body = encodeFeatures(self.features)
        return struct.pack(">BBH", self.version, self.status, len(body)) + body


def encodeResponse(status: int, *features: Feature) -> bytes:
    return Response(status, tuple(features)).encode()


def connectRequest(
    address: str,
    network: str = "tcp",
    username: str | None = None,
    password: str = "",
) -> Request:
    """
    The CONNECT request GOST's client sends (spec-relay.md 3.1, 3.2): for UDP
    the FUDP flag and a leading Network feature; then UserAuth when a
    username is configured; then Addr when the address is not empty.
    """
    features: list[Feature] = []
    cmd = int(Command.CONNECT)
    if network == "udp":
        cmd |= FLAG_UDP
        features.append(NetworkFeature(Network.UDP))
    elif network in ("unix", "serial"):
        features.append(NetworkFeature(Network.UNIX if network == "unix" else Network.SERIAL))
    if username is not None:
        features.append(UserAuthFeature(username, password or ""))
    if address:
        features.append(AddrFeature.fromAddress(address))
    return Request(int(cmd), tuple(features))


class _HeaderParser:
    """
    Incremental parser for the common C{VER X FLEN FEATURES} shape.

    Feed it bytes with L{feed}; it returns C{None} until a whole message has
    arrived, then the message.  L{remainder} holds every byte after the
    message, which belongs to the next protocol stage.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._needed: int | None = None
        self.remainder = b""
        self.done = False

    def feed(self, data: bytes):  # type: ignore[no-untyped-def]
        if self.done:
            raise RuntimeError("parser already finished; use remainder")
        self._buffer += data
        if self._needed is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            if self._buffer[0] != VERSION:
                raise RelayDecodeError(f"bad version 0x{self._buffer[0]:02x}")
            (flen,) = struct.unpack_from(">H", self._buffer, 2)
            self._needed = HEADER_SIZE + flen
        if len(self._buffer) < self._needed:
            return None
        message = bytes(self._buffer[: self._needed])
        self.remainder = bytes(self._buffer[self._needed :])
        self._buffer = bytearray()
        self.done = True
        return self._build(message[1], decodeFeatures(message[HEADER_SIZE:]))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _build(self, code: int, features: tuple[Feature, ...]):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class RequestParser(_HeaderParser):
    def feed(self, data: bytes) -> Request | None:
        return super().feed(data)  # type: ignore[no-any-return]

    def _build(self, code: int, features: tuple[Feature, ...]) -> Request:
        return Request(code, features)


class ResponseParser(_HeaderParser):
    def feed(self, data: bytes) -> Response | None:
        return super().feed(data)  # type: ignore[no-any-return]

    def _build(self, code: int, features: tuple[Feature, ...]) -> Response:
        return Response(code, features)


def decodeRequest(data: bytes) -> Request:
    """
    Decode exactly one request; trailing bytes are an error.
    """
    parser = RequestParser()
    request = parser.feed(data)
    if request is None:
        raise RelayDecodeError("truncated request")
    if parser.remainder:
        raise RelayDecodeError("bytes after the request")
    return request


def decodeResponse(data: bytes) -> Response:
    parser = ResponseParser()
    response = parser.feed(data)
    if response is None:
        raise RelayDecodeError("truncated response")
    if parser.remainder:
        raise RelayDecodeError("bytes after the response")
    return response


__all__ = [
    "ATYP_DOMAIN",
    "ATYP_IPV4",
    "ATYP_IPV6",
    "AddrFeature",
    "Command",
    "Feature",
    "FeatureType",
    "FLAG_UDP",
    "Network",
    "NetworkFeature",
    "OpaqueFeature",
    "RelayDecodeError",
    "RelayEncodeError",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "Status",
    "TunnelFeature",
    "UserAuthFeature",
    "connectRequest",
    "decodeRequest",
    "decodeResponse",
    "encodeResponse",
    "statusText",
]
