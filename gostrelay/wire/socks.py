"""
The server side of SOCKS4/4a and SOCKS5 (RFC 1928, RFC 1929), sans-IO.

The local proxy entry (spec-relay.md section 11) serves both so that
ordinary clients can reach a relay chain; GOST's SOCKS5 UDP association
(spec 13.8) also needs the RFC 1928 UDP datagram header.

Each C{parse*} function for the stream messages takes every byte received so
far and returns C{None} when more are needed, or C{(value, consumed)} once a
whole message is there, so a protocol can keep one buffer and call the
parser after every C{dataReceived}.  Malformed input raises L{SocksError},
whose C{reply} is what the server should write before closing (C{b""}: just
close).  The parsers do not judge commands or empty domain names: that is the
handler's policy (GOST dials an empty host, i.e. this machine).

L{Socks5ServerNegotiation} strings the SOCKS5 parsers together into the
server's side of a whole negotiation (greeting, method selection,
username/password, request, reply) as an explicit state machine, so that a
handler only moves bytes and dials; the SOCKS client machines
(L{gostrelay.wire.socksclient}) are its counterparts.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Callable

from gostrelay.wire.address import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    AddressError,
    atypeForHost,
    decodeSocksAddress,
    encodeSocksAddress,
)

SOCKS4_VERSION = 0x04
SOCKS5_VERSION = 0x05
USERPASS_VERSION = 0x01

# SOCKS4/4a
SOCKS4_CONNECT = 0x01
SOCKS4_BIND = 0x02
SOCKS4_GRANTED = 0x5A
SOCKS4_REJECTED = 0x5B

#: Longest userid and SOCKS4a domain name accepted, in bytes (NUL excluded).
SOCKS4_MAX_FIELD = 255

# SOCKS5 methods
METHOD_NO_AUTH = 0x00
METHOD_USERPASS = 0x02
METHOD_NO_ACCEPTABLE = 0xFF

# SOCKS5 commands
CMD_CONNECT = 0x01
CMD_BIND = 0x02
CMD_UDP_ASSOCIATE = 0x03

# SOCKS5 reply codes
REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NOT_ALLOWED = 0x02
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class SocksError(ValueError):
    """
    The client sent something that is not SOCKS.

    @ivar reply: the bytes to send before closing; C{b""} means close
        without a reply.
    """

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _port(port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise AddressError(f"port out of range: {port}")
    return struct.pack(">H", port)


# SOCKS4 / SOCKS4a


@dataclass(frozen=True)
class Socks4Request:
    """
    C{host} is the dotted IPv4 address, or for SOCKS4a (address 0.0.0.x,
    x != 0) the domain name sent after the userid.
    """

    command: int
    port: int
    host: str
    userid: str


def _socks4Field(buf: bytes, start: int, what: str) -> int | None:
    """
    The offset of the NUL ending the field that starts at C{start}, or
    C{None} if it has not arrived yet.

    @raise SocksError: when the field is longer than L{SOCKS4_MAX_FIELD}.
    """
    nul = buf.find(b"\x00", start, start + SOCKS4_MAX_FIELD + 1)
    if nul < 0:
        if len(buf) - start > SOCKS4_MAX_FIELD:
            raise SocksError(
                f"SOCKS4 {what} longer than {SOCKS4_MAX_FIELD} bytes",
                encodeSocks4Reply(SOCKS4_REJECTED),
            )
        return None
    return nul


def parseSocks4Request(buf: bytes) -> tuple[Socks4Request, int] | None:
    """
    Parse C{VN CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]}.
    """
    if not buf:
        return None
    if buf[0] != SOCKS4_VERSION:
        raise SocksError(f"not SOCKS4: version 0x{buf[0]:02x}")
    if len(buf) < 8:
        return None
    command = buf[1]
    (port,) = struct.unpack_from(">H", buf, 2)
    ip = bytes(buf[4:8])
    end = _socks4Field(buf, 8, "userid")
    if end is None:
        return None
    userid = _text(buf[8:end])
    if ip[:3] == b"\x00\x00\x00" and ip[3] != 0:
        domainEnd = _socks4Field(buf, end + 1, "domain name")
        if domainEnd is None:
            return None
        host = _text(buf[end + 1 : domainEnd])
        end = domainEnd
    else:
        host = str(ipaddress.IPv4Address(ip))
    return Socks4Request(command, port, host, userid), end + 1


def encodeSocks4Reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """
    C{VN=0 CD DSTPORT DSTIP}.  GOST always sends 0.0.0.0:0.

    @raise AddressError: if C{host} is not an IPv4 address (or IPv4-mapped
        IPv6) or C{port} is out of range.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise AddressError(f"SOCKS4 replies carry only IPv4 addresses, not {host!r}")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            raise AddressError(f"SOCKS4 replies carry only IPv4 addresses, not {host!r}")
        ip = ip.ipv4_mapped
    return bytes([0, code]) + _port(port) + ip.packed


# SOCKS5 negotiation


def parseMethods(buf: bytes) -> tuple[list[int], int] | None:
    """
    Parse the greeting C{VER NMETHODS METHODS}.
    """
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksError(f"not SOCKS5: version 0x{buf[0]:02x}")
    if len(buf) < 2:
        return None
    end = 2 + buf[1]
    if len(buf) < end:
        return None
    return list(buf[2:end]), end


def encodeMethodSelection(method: int) -> bytes:
    return bytes([SOCKS5_VERSION, method])


def parseUserPass(buf: bytes) -> tuple[tuple[str, str], int] | None:
    """
    Parse the RFC 1929 request C{VER=1 ULEN UNAME PLEN PASSWD}.  Empty
    names and passwords are passed through.
    """
    if not buf:
        return None
    if buf[0] != USERPASS_VERSION:
        raise SocksError(
            f"bad username/password version 0x{buf[0]:02x}",
            encodeUserPassStatus(False),
        )
    if len(buf) < 2:
        return None
    ulen = buf[1]
    if len(buf) < 2 + ulen + 1:
        return None
    plen = buf[2 + ulen]
    end = 2 + ulen + 1 + plen
    if len(buf) < end:
        return None
    return (_text(buf[2 : 2 + ulen]), _text(buf[3 + ulen : end])), end


def encodeUserPassStatus(ok: bool) -> bytes:
    return bytes([USERPASS_VERSION, 0x00 if ok else 0x01])


# SOCKS5 requests and replies


@dataclass(frozen=True)
class Socks5Request:
    command: int
    host: str
    port: int
    atype: int


def _addressLength(buf: bytes, offset: int) -> int | None:
    """
    The length of the C{ATYP ADDR PORT} at C{offset}, C{None} if not known
    yet.

    @raise SocksError: for an unknown address type.
    """
    if len(buf) <= offset:
        return None
    atype = buf[offset]
    if atype == ATYP_IPV4:
        return 1 + 4 + 2
    if atype == ATYP_IPV6:
        return 1 + 16 + 2
    if atype == ATYP_DOMAIN:
        if len(buf) <= offset + 1:
            return None
        return 2 + buf[offset + 1] + 2
    raise SocksError(
        f"unknown address type 0x{atype:02x}",
        encodeSocks5Reply(REP_ADDRESS_TYPE_NOT_SUPPORTED),
    )


def parseSocks5Request(buf: bytes) -> tuple[Socks5Request, int] | None:
    """
    Parse C{VER CMD RSV ATYP DST.ADDR DST.PORT}.  RSV is not checked; the
    command is returned whatever it is (the handler answers
    L{REP_COMMAND_NOT_SUPPORTED}).
    """
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksError(f"not SOCKS5: version 0x{buf[0]:02x}")
    length = _addressLength(buf, 3)
    if length is None or len(buf) < 3 + length:
        return None
    atype, host, port, end = decodeSocksAddress(buf, 3)
    return Socks5Request(buf[1], host, port, atype), end


def _encodeAddress(host: str, port: int) -> bytes:
    atype = atypeForHost(host)
    if atype != ATYP_DOMAIN and host.startswith("["):
        host = host.strip("[]")
    return encodeSocksAddress(atype, host, port)


def encodeSocks5Reply(rep: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """
    C{VER REP RSV ATYP BND.ADDR BND.PORT}, the address type chosen from
    C{host} as GOST does (IP literal: IPv4/IPv6, else a domain).

    @raise AddressError: for an out-of-range port or a domain longer than
        255 bytes.
    """
    return bytes([SOCKS5_VERSION, rep, 0x00]) + _encodeAddress(host, port)


# SOCKS5 negotiation as a whole (the server's side)


class Socks5Phase(enum.Enum):
    """
    Where a L{Socks5ServerNegotiation} is: what it waits for next.
    """

    #: The client's greeting (C{VER NMETHODS METHODS}).
    GREETING = "greeting"
    #: The client's RFC 1929 username/password.
    USERPASS = "userpass"
    #: The client's request (C{VER CMD RSV ATYP DST.ADDR DST.PORT}).
    REQUEST = "request"
    #: The driver's answer to the request (L{Socks5ServerNegotiation.reply}).
    REPLY = "reply"
    #: The reply was success: the connection carries the client's bytes.
    DONE = "done"
    #: The negotiation failed: the connection is to be closed.
    FAILED = "failed"


#: SOCKS5 commands by name, for refusal lines.
_COMMAND_NAMES = {CMD_CONNECT: "CONNECT", CMD_BIND: "BIND", CMD_UDP_ASSOCIATE: "UDP ASSOCIATE"}


@dataclass(frozen=True)
class Socks5Step:
    """
    What one L{Socks5ServerNegotiation.receive} asks of its driver.

    @ivar consumed: how many bytes of the buffer were used; the rest stay
        buffered (after the request, they belong to the target).
    @ivar send: the bytes to write to the client now (C{b""}: nothing).
    @ivar request: the client's request, once the negotiation reached it;
        the driver dials and answers with L{Socks5ServerNegotiation.reply}.
    @ivar refused: why the negotiation failed: write C{send}, then close.
    """

    consumed: int = 0
    send: bytes = b""
    request: Socks5Request | None = None
    refused: str | None = None


class Socks5ServerNegotiation:
    """
    The server's side of one SOCKS5 negotiation (RFC 1928, RFC 1929),
    sans-IO: greeting -> method selection -> username/password -> request
    -> reply.

    The driver calls L{receive} with every byte received so far (the module's
    convention: it keeps one buffer and drops C{consumed} bytes) and writes
    what the step says; once a step carries a C{request} the driver dials
    and answers with L{reply}.  Every input gets a defined answer: a
    malformed message, a method or command we do not serve, or credentials
    that do not pass end in a step with C{refused} (and the reply the client
    should read first, as GOST answers), never in an exception.

    The methods chosen are GOST's: with users (C{authenticate} given) only
    username/password; without, "no authentication" when offered, else
    username/password with any credentials (a client that offers only that
    method still gets through; its user name is logged).

    @param authenticate: checks a user name and password; C{None}: no users.
    @param commands: the commands served; others are answered "command not
        supported" (C{0x07}).  CONNECT by default; UDP ASSOCIATE where the
        handler serves it.
    @ivar user: the user name the client sent (C{""} before, or without).
    """

    def __init__(
        self,
        authenticate: Callable[[str, str], bool] | None = None,
        commands: frozenset[int] = frozenset({CMD_CONNECT}),
    ) -> None:
        self.authenticate = authenticate
        self.commands = commands
        self.phase = Socks5Phase.GREETING
        self.user = ""
        self.request: Socks5Request | None = None

    def receive(self, buf: bytes) -> Socks5Step:
        """
        Take every byte received so far; answer as far as they go.
        """
        consumed = 0
        send = b""
        try:
            while True:
                rest = buf[consumed:] if consumed else buf
                phase = self.phase
                if phase is Socks5Phase.GREETING:
                    parsed = parseMethods(rest)
                    if parsed is None:
                        break
                    methods, n = parsed
                    consumed += n
                    method, why = self._chooseMethod(methods)
                    send += encodeMethodSelection(method)
                    if why:
                        return self._fail(consumed, send, why)
                    self.phase = Socks5Phase.USERPASS if method == METHOD_USERPASS else Socks5Phase.REQUEST
                elif phase is Socks5Phase.USERPASS:
                    parsed2 = parseUserPass(rest)
                    if parsed2 is None:
                        break
                    (user, password), n = parsed2
                    consumed += n
                    self.user = user
                    if self.authenticate is not None and not self.authenticate(user, password):
                        send += encodeUserPassStatus(False)
                        return self._fail(consumed, send, f"SOCKS5 authentication failed for user {user!r}")
                    send += encodeUserPassStatus(True)
                    self.phase = Socks5Phase.REQUEST
                elif phase is Socks5Phase.REQUEST:
                    parsed3 = parseSocks5Request(rest)
                    if parsed3 is None:
                        break
                    request, n = parsed3
                    consumed += n
                    self.request = request
                    if request.command not in self.commands:
                        send += encodeSocks5Reply(REP_COMMAND_NOT_SUPPORTED)
                        name = _COMMAND_NAMES.get(request.command, f"0x{request.command:02x}")
                        return self._fail(consumed, send, f"SOCKS5 {name} is not supported")
                    self.phase = Socks5Phase.REPLY
                    return Socks5Step(consumed, send, request=request)
                else:
                    # Past the request: the bytes are the driver's, not ours.
                    break
        except SocksError as e:
            return self._fail(consumed, send + e.reply, f"bad socks5 request: {e}")
        return Socks5Step(consumed, send)

    def _chooseMethod(self, methods: list[int]) -> tuple[int, str]:
        """
        The method to select, and why the negotiation ends (C{""}: it goes
        on).
        """
        if self.authenticate is not None:
            if METHOD_USERPASS not in methods:
                return METHOD_NO_ACCEPTABLE, "SOCKS5 client offers no username/password method"
            return METHOD_USERPASS, ""
        if METHOD_NO_AUTH in methods:
            return METHOD_NO_AUTH, ""
        if METHOD_USERPASS in methods:
            return METHOD_USERPASS, ""
        return METHOD_NO_ACCEPTABLE, "SOCKS5 client offers no acceptable method"

    def _fail(self, consumed: int, send: bytes, why: str) -> Socks5Step:
        self.phase = Socks5Phase.FAILED
        return Socks5Step(consumed, send, refused=why)

    def reply(self, rep: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
        """
        The reply to the request: success (L{REP_SUCCEEDED}) with the bound
        address (one a reply cannot carry is sent as C{0.0.0.0:0}), or a
        failure code.

        @raise ValueError: when no request waits for its reply.
        """
        if self.phase is not Socks5Phase.REPLY:
            raise ValueError(f"no SOCKS5 request waits for a reply (phase {self.phase.value})")
        self.phase = Socks5Phase.DONE if rep == REP_SUCCEEDED else Socks5Phase.FAILED
        try:
            return encodeSocks5Reply(rep, host, port)
        except ValueError:
            return encodeSocks5Reply(rep)


# SOCKS5 UDP


@dataclass(frozen=True)
class Socks5Datagram:
    frag: int
    host: str
    port: int
    data: bytes


def parseSocks5Datagram(datagram: bytes) -> Socks5Datagram:
    """
    Parse one whole UDP datagram C{RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA}.

    RSV is ignored (GOST's reader takes a non-zero RSV as the data length;
    SOCKS5 clients send zero) and all bytes after the port are data.  A
    non-zero FRAG is returned, not refused: RFC 1928 says to drop such
    datagrams, which is the caller's job.

    @raise SocksError: if the datagram is too short or the address type
        unknown.
    """
    if len(datagram) < 4:
        raise SocksError("short SOCKS5 UDP datagram")
    try:
        _, host, port, end = decodeSocksAddress(datagram, 3)
    except AddressError as e:
        raise SocksError(f"bad SOCKS5 UDP datagram: {e}")
    return Socks5Datagram(datagram[2], host, port, bytes(datagram[end:]))


def encodeSocks5Datagram(host: str, port: int, data: bytes, frag: int = 0) -> bytes:
    return bytes([0x00, 0x00, frag]) + _encodeAddress(host, port) + data


__all__ = [
    "CMD_BIND",
    "CMD_CONNECT",
    "CMD_UDP_ASSOCIATE",
    "METHOD_NO_ACCEPTABLE",
    "METHOD_NO_AUTH",
    "METHOD_USERPASS",
    "REP_ADDRESS_TYPE_NOT_SUPPORTED",
    "REP_COMMAND_NOT_SUPPORTED",
    "REP_CONNECTION_REFUSED",
    "REP_GENERAL_FAILURE",
    "REP_HOST_UNREACHABLE",
    "REP_NETWORK_UNREACHABLE",
    "REP_NOT_ALLOWED",
    "REP_SUCCEEDED",
    "REP_TTL_EXPIRED",
    "SOCKS4_BIND",
    "SOCKS4_CONNECT",
    "SOCKS4_GRANTED",
    "SOCKS4_MAX_FIELD",
    "SOCKS4_REJECTED",
    "Socks4Request",
    "Socks5Datagram",
    "Socks5Phase",
    "Socks5Request",
    "Socks5ServerNegotiation",
    "Socks5Step",
    "SocksError",
    "encodeMethodSelection",
    "encodeSocks4Reply",
    "encodeSocks5Datagram",
    "encodeSocks5Reply",
    "encodeUserPassStatus",
    "parseMethods",
    "parseSocks4Request",
    "parseSocks5Datagram",
    "parseSocks5Request",
    "parseUserPass",
]
