"""
Tests for L{gostrelay.wire.socks}: the server side of SOCKS4/4a and SOCKS5
(RFC 1928, RFC 1929) that the local proxy entry speaks (spec-relay.md 11).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.address import ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, AddressError, encodeSocksAddress
from gostrelay.wire.socks import (
    CMD_BIND,
    CMD_CONNECT,
    CMD_UDP_ASSOCIATE,
    METHOD_NO_ACCEPTABLE,
    METHOD_NO_AUTH,
    METHOD_USERPASS,
    REP_ADDRESS_TYPE_NOT_SUPPORTED,
    REP_COMMAND_NOT_SUPPORTED,
    REP_CONNECTION_REFUSED,
    REP_GENERAL_FAILURE,
    REP_HOST_UNREACHABLE,
    REP_NETWORK_UNREACHABLE,
    REP_NOT_ALLOWED,
    REP_SUCCEEDED,
    REP_TTL_EXPIRED,
    SOCKS4_BIND,
    SOCKS4_CONNECT,
    SOCKS4_GRANTED,
    SOCKS4_REJECTED,
    Socks4Request,
    Socks5Datagram,
    Socks5Phase,
    Socks5Request,
    Socks5ServerNegotiation,
    Socks5Step,
    SocksError,
    encodeMethodSelection,
    encodeSocks4Reply,
    encodeSocks5Datagram,
    encodeSocks5Reply,
    encodeUserPassStatus,
    parseMethods,
    parseSocks4Request,
    parseSocks5Datagram,
    parseSocks5Request,
    parseUserPass,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

ports = st.integers(min_value=0, max_value=0xFFFF)

#: Byte strings without NUL, as SOCKS4 userids and domain names.
nulFree = st.binary(max_size=255).filter(lambda b: b"\x00" not in b)

#: Domain "names" as GOST sees them: up to 255 arbitrary bytes.
domainBytes = st.binary(max_size=255)


def withVersion(version: int, max_size: int) -> st.SearchStrategy[bytes]:
    """
    Arbitrary bytes, half of them starting with the right version byte so
    that the parser gets past its first check.
    """
    return st.one_of(
        st.binary(max_size=max_size),
        st.binary(max_size=max_size).map(lambda b: bytes([version]) + b),
    )


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def assertIncremental(
    case: SynchronousTestCase,
    parse: Callable[[bytes], Any],
    message: bytes,
    expected: object,
    trailing: bytes = b"",
) -> None:
    """
    Every strict prefix of C{message} is incomplete, the whole of it parses
    to C{expected}, and bytes after it are not consumed.
    """
    for i in range(len(message)):
        case.assertIsNone(parse(message[:i]), f"prefix of {i} bytes")
    case.assertEqual(parse(message), (expected, len(message)))
    case.assertEqual(parse(message + trailing), (expected, len(message)))


def canonicalIP(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """
    The address GOST's encoder sends for an IP literal: brackets dropped,
    IPv4-mapped IPv6 as IPv4.
    """
    ip = ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def socks5RequestBytes(command: int, atype: int, host: str, port: int) -> bytes:
    return bytes([5, command, 0]) + encodeSocksAddress(atype, host, port)


class ConstantsTests(SynchronousTestCase):
    def test_values(self) -> None:
        """
        The protocol numbers from RFC 1928 and the SOCKS4 memo.
        """
        self.assertEqual(
            [SOCKS4_CONNECT, SOCKS4_BIND, SOCKS4_GRANTED, SOCKS4_REJECTED],
            [1, 2, 0x5A, 0x5B],
        )
        self.assertEqual([METHOD_NO_AUTH, METHOD_USERPASS, METHOD_NO_ACCEPTABLE], [0, 2, 0xFF])
        self.assertEqual([CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE], [1, 2, 3])
        self.assertEqual(
            [
                REP_SUCCEEDED,
                REP_GENERAL_FAILURE,
                REP_NOT_ALLOWED,
                REP_NETWORK_UNREACHABLE,
                REP_HOST_UNREACHABLE,
                REP_CONNECTION_REFUSED,
                REP_TTL_EXPIRED,
                REP_COMMAND_NOT_SUPPORTED,
                REP_ADDRESS_TYPE_NOT_SUPPORTED,
            ],
            list(range(9)),
        )

    def test_socksErrorIsValueError(self) -> None:
        """
        SocksError is a ValueError carrying the reply, empty by default.
        """
        error = SocksError("boom")
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.reply, b"")
        self.assertEqual(SocksError("boom", b"\x01").reply, b"\x01")


class Socks4Tests(SynchronousTestCase):
    """
    SOCKS4 and SOCKS4a requests: C{VN CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]}.
    """

    def test_connectExample(self) -> None:
        """
        The classic example: Fred connects to 66.102.7.99:80.
        """
        message = h("04 01 0050 42660763") + b"Fred\x00"
        assertIncremental(
            self,
            parseSocks4Request,
            message,
            Socks4Request(SOCKS4_CONNECT, 80, "66.102.7.99", "Fred"),
            b"GET / HTTP/1.0\r\n",
        )

    def test_socks4aDomain(self) -> None:
        """
        Address 0.0.0.x (x != 0) means the domain name follows the userid.
        """
        message = h("04 01 01bb 000000ff") + b"Fred\x00example.com\x00"
        assertIncremental(
            self,
            parseSocks4Request,
            message,
            Socks4Request(SOCKS4_CONNECT, 443, "example.com", "Fred"),
            b"\x16\x03\x01",
        )

    def test_zeroAddressIsNot4a(self) -> None:
        """
        0.0.0.0 is an IPv4 address, not the SOCKS4a marker: what follows
        the userid is not part of the request.
        """
        message = h("04 02 1f90 00000000") + b"\x00"
        result = parseSocks4Request(message + b"example.com\x00")
        self.assertEqual(result, (Socks4Request(SOCKS4_BIND, 8080, "0.0.0.0", ""), len(message)))

    def test_otherCommandsParsed(self) -> None:
        """
        The command is not judged by the parser.
        """
        result = parseSocks4Request(h("04 09 0001 01020304 00"))
        self.assertEqual(result, (Socks4Request(9, 1, "1.2.3.4", ""), 9))

    def test_badVersion(self) -> None:
        """
        A first byte other than 4 is a plain close, detected at once.
        """
        for message in (b"\x05", h("05 01 0050 42660763 00"), b"G"):
            with self.assertRaises(SocksError) as caught:
                parseSocks4Request(message)
            self.assertEqual(caught.exception.reply, b"")

    def test_useridCap(self) -> None:
        """
        A 255-byte userid is accepted; a 256th byte is rejected with the
        SOCKS4 rejection reply, without waiting for the NUL.
        """
        head = h("04 01 0050 01020304")
        longest = b"u" * 255
        self.assertEqual(
            parseSocks4Request(head + longest + b"\x00"),
            (Socks4Request(1, 80, "1.2.3.4", "u" * 255), 8 + 256),
        )
        self.assertIsNone(parseSocks4Request(head + longest))
        for tail in (b"", b"\x00"):
            with self.assertRaises(SocksError) as caught:
                parseSocks4Request(head + longest + b"u" + tail)
            self.assertEqual(caught.exception.reply, h("00 5b 0000 00000000"))

    def test_domainCap(self) -> None:
        """
        The SOCKS4a domain name has the same 255-byte cap.
        """
        head = h("04 01 0050 00000001") + b"id\x00"
        self.assertEqual(
            parseSocks4Request(head + b"d" * 255 + b"\x00"),
            (Socks4Request(1, 80, "d" * 255, "id"), len(head) + 256),
        )
        self.assertIsNone(parseSocks4Request(head + b"d" * 255))
        with self.assertRaises(SocksError) as caught:
            parseSocks4Request(head + b"d" * 256)
        self.assertEqual(caught.exception.reply, encodeSocks4Reply(SOCKS4_REJECTED))

    def test_nonUTF8Userid(self) -> None:
        """
        Userids are bytes to GOST; any byte but NUL survives through
        surrogateescape.
        """
        request, _ = parseSocks4Request(h("04 01 0050 01020304 ff fe 00"))  # type: ignore[misc]
        self.assertEqual(request.userid.encode("utf-8", "surrogateescape"), b"\xff\xfe")

    def test_replies(self) -> None:
        """
        Replies have VN 0; GOST's default address is 0.0.0.0:0.
        """
        self.assertEqual(encodeSocks4Reply(SOCKS4_GRANTED), h("00 5a 0000 00000000"))
        self.assertEqual(encodeSocks4Reply(SOCKS4_REJECTED), h("00 5b 0000 00000000"))
        self.assertEqual(encodeSocks4Reply(SOCKS4_GRANTED, "66.102.7.99", 80), h("00 5a 0050 42660763"))
        self.assertEqual(encodeSocks4Reply(SOCKS4_GRANTED, "::ffff:1.2.3.4", 1), h("00 5a 0001 01020304"))

    def test_replyNeedsIPv4(self) -> None:
        """
        SOCKS4 cannot carry IPv6 or names, nor ports beyond 16 bits.
        """
        for host, port in (("::1", 0), ("example.com", 0), ("1.2.3.4", 65536), ("1.2.3.4", -1)):
            self.assertRaises(AddressError, encodeSocks4Reply, SOCKS4_GRANTED, host, port)

    @PROPERTY_SETTINGS
    @given(
        st.integers(min_value=0, max_value=255),
        ports,
        st.ip_addresses(v=4).filter(lambda ip: not (0 < int(ip) < 256)),
        nulFree,
        st.binary(max_size=20),
    )
    def test_roundTrip4(
        self, command: int, port: int, ip: ipaddress.IPv4Address, userid: bytes, trailing: bytes
    ) -> None:
        """
        Any SOCKS4 request parses back, whatever the split point.
        """
        message = bytes([4, command]) + struct.pack(">H", port) + ip.packed + userid + b"\x00"
        expected = Socks4Request(command, port, str(ip), userid.decode("utf-8", "surrogateescape"))
        assertIncremental(self, parseSocks4Request, message, expected, trailing)

    @PROPERTY_SETTINGS
    @given(st.integers(min_value=1, max_value=255), ports, nulFree, nulFree)
    def test_roundTrip4a(self, last: int, port: int, userid: bytes, domain: bytes) -> None:
        """
        Any SOCKS4a request parses back, whatever the split point.
        """
        message = bytes([4, 1]) + struct.pack(">H", port) + bytes([0, 0, 0, last])
        message += userid + b"\x00" + domain + b"\x00"
        expected = Socks4Request(
            1,
            port,
            domain.decode("utf-8", "surrogateescape"),
            userid.decode("utf-8", "surrogateescape"),
        )
        assertIncremental(self, parseSocks4Request, message, expected, b"\x00\x01")

    @PROPERTY_SETTINGS
    @given(withVersion(4, 600))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Anything at all is incomplete, a request, or a SocksError.
        """
        try:
            result = parseSocks4Request(data)
        except SocksError:
            return
        if result is not None:
            request, consumed = result
            self.assertIsInstance(request, Socks4Request)
            self.assertTrue(9 <= consumed <= len(data))


class MethodsTests(SynchronousTestCase):
    """
    The RFC 1928 greeting and method selection.
    """

    def test_examples(self) -> None:
        """
        Byte-exact greetings and selections.
        """
        assertIncremental(self, parseMethods, h("05 01 00"), [METHOD_NO_AUTH], b"\x05")
        assertIncremental(self, parseMethods, h("05 02 00 02"), [0, 2])
        assertIncremental(self, parseMethods, h("05 03 00 80 02"), [0, 0x80, 2])
        self.assertEqual(encodeMethodSelection(METHOD_NO_AUTH), h("05 00"))
        self.assertEqual(encodeMethodSelection(METHOD_USERPASS), h("05 02"))
        self.assertEqual(encodeMethodSelection(METHOD_NO_ACCEPTABLE), h("05 ff"))

    def test_noMethods(self) -> None:
        """
        NMETHODS 0 is a complete greeting with an empty list.
        """
        self.assertEqual(parseMethods(h("05 00 05")), ([], 2))

    def test_badVersion(self) -> None:
        """
        A version other than 5 closes without a reply.
        """
        for message in (b"\x04", h("04 01 00"), b"\x00"):
            with self.assertRaises(SocksError) as caught:
                parseMethods(message)
            self.assertEqual(caught.exception.reply, b"")

    @PROPERTY_SETTINGS
    @given(st.lists(st.integers(min_value=0, max_value=255), max_size=255), st.binary(max_size=10))
    def test_roundTrip(self, methods: list[int], trailing: bytes) -> None:
        message = bytes([5, len(methods)]) + bytes(methods)
        assertIncremental(self, parseMethods, message, methods, trailing)

    @PROPERTY_SETTINGS
    @given(withVersion(5, 300))
    def test_arbitraryBytes(self, data: bytes) -> None:
        try:
            result = parseMethods(data)
        except SocksError:
            return
        if result is not None:
            self.assertTrue(2 <= result[1] <= len(data))


class UserPassTests(SynchronousTestCase):
    """
    RFC 1929 username/password sub-negotiation.
    """

    def test_example(self) -> None:
        """
        C{01 ULEN UNAME PLEN PASSWD}; status C{01 00} or C{01 01}.
        """
        message = h("01 05") + b"alice" + h("06") + b"s3cr3t"
        assertIncremental(self, parseUserPass, message, ("alice", "s3cr3t"), b"\x05\x01\x00")
        self.assertEqual(encodeUserPassStatus(True), h("01 00"))
        self.assertEqual(encodeUserPassStatus(False), h("01 01"))

    def test_empty(self) -> None:
        """
        Empty names and passwords are passed through to the auther.
        """
        self.assertEqual(parseUserPass(h("01 00 00")), (("", ""), 3))

    def test_nonUTF8(self) -> None:
        """
        Names and passwords are decoded with surrogateescape.
        """
        result = parseUserPass(h("01 01 ff 02 c3 a9"))
        self.assertEqual(result, (("\udcff", "\u00e9"), 6))

    def test_badVersion(self) -> None:
        """
        A version other than 1 is answered with failure status.
        """
        for message in (b"\x05", h("05 01 61 01 62"), b"\x00"):
            with self.assertRaises(SocksError) as caught:
                parseUserPass(message)
            self.assertEqual(caught.exception.reply, h("01 01"))

    @PROPERTY_SETTINGS
    @given(st.binary(max_size=255), st.binary(max_size=255))
    def test_roundTrip(self, user: bytes, password: bytes) -> None:
        message = bytes([1, len(user)]) + user + bytes([len(password)]) + password
        expected = (user.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape"))
        assertIncremental(self, parseUserPass, message, expected, b"\x01")

    @PROPERTY_SETTINGS
    @given(withVersion(1, 600))
    def test_arbitraryBytes(self, data: bytes) -> None:
        try:
            result = parseUserPass(data)
        except SocksError:
            return
        if result is not None:
            self.assertTrue(3 <= result[1] <= len(data))


class Socks5RequestTests(SynchronousTestCase):
    """
    SOCKS5 requests C{VER CMD RSV ATYP DST.ADDR DST.PORT}.
    """

    def test_ipv4(self) -> None:
        message = h("05 01 00 01 7f000001 0050")
        assertIncremental(
            self,
            parseSocks5Request,
            message,
            Socks5Request(CMD_CONNECT, "127.0.0.1", 80, ATYP_IPV4),
            b"GET",
        )

    def test_domain(self) -> None:
        message = h("05 01 00 03 0b") + b"example.com" + h("01bb")
        assertIncremental(
            self,
            parseSocks5Request,
            message,
            Socks5Request(CMD_CONNECT, "example.com", 443, ATYP_DOMAIN),
            b"\x16\x03\x01",
        )

    def test_ipv6(self) -> None:
        message = h("05 03 00 04 00000000000000000000000000000001 1f90")
        assertIncremental(
            self,
            parseSocks5Request,
            message,
            Socks5Request(CMD_UDP_ASSOCIATE, "::1", 8080, ATYP_IPV6),
        )

    def test_reservedIgnored(self) -> None:
        """
        A non-zero RSV does not matter; nor does an unknown command (the
        handler answers REP_COMMAND_NOT_SUPPORTED).
        """
        self.assertEqual(
            parseSocks5Request(h("05 f1 ff 01 01020304 0001")),
            (Socks5Request(0xF1, "1.2.3.4", 1, ATYP_IPV4), 10),
        )

    def test_badAddressType(self) -> None:
        """
        An unknown ATYP gets reply 08, as soon as the ATYP byte arrives.
        """
        for message in (h("05 01 00 02"), h("05 01 00 05 01020304 0050"), h("05 01 00 00")):
            with self.assertRaises(SocksError) as caught:
                parseSocks5Request(message)
            self.assertEqual(caught.exception.reply, h("05 08 00 01 00000000 0000"))

    def test_badVersion(self) -> None:
        for message in (b"\x04", h("04 01 00 01 01020304 0050")):
            with self.assertRaises(SocksError) as caught:
                parseSocks5Request(message)
            self.assertEqual(caught.exception.reply, b"")

    def test_replies(self) -> None:
        """
        Replies pick the address type from the host, like GOST.
        """
        self.assertEqual(encodeSocks5Reply(REP_SUCCEEDED), h("05 00 00 01 00000000 0000"))
        self.assertEqual(
            encodeSocks5Reply(REP_SUCCEEDED, "10.0.0.1", 1080),
            h("05 00 00 01 0a000001 0438"),
        )
        self.assertEqual(
            encodeSocks5Reply(REP_SUCCEEDED, "2001:db8::1", 443),
            h("05 00 00 04 20010db8000000000000000000000001 01bb"),
        )
        self.assertEqual(
            encodeSocks5Reply(REP_SUCCEEDED, "[2001:db8::1]", 443),
            h("05 00 00 04 20010db8000000000000000000000001 01bb"),
        )
        self.assertEqual(
            encodeSocks5Reply(REP_SUCCEEDED, "::ffff:10.0.0.1", 1),
            h("05 00 00 01 0a000001 0001"),
        )
        self.assertEqual(
            encodeSocks5Reply(REP_HOST_UNREACHABLE, "example.com", 80),
            h("05 04 00 03 0b") + b"example.com" + h("0050"),
        )
        self.assertEqual(encodeSocks5Reply(REP_NETWORK_UNREACHABLE), h("05 03 00 01 00000000 0000"))

    def test_replyErrors(self) -> None:
        self.assertRaises(AddressError, encodeSocks5Reply, REP_SUCCEEDED, "1.2.3.4", 65536)
        self.assertRaises(AddressError, encodeSocks5Reply, REP_SUCCEEDED, "a" * 256, 1)

    @PROPERTY_SETTINGS
    @given(
        st.integers(min_value=0, max_value=255),
        st.one_of(
            st.tuples(st.just(ATYP_IPV4), st.ip_addresses(v=4).map(str)),
            st.tuples(st.just(ATYP_IPV6), st.ip_addresses(v=6).map(str)),
            st.tuples(st.just(ATYP_DOMAIN), domainBytes.map(lambda b: b.decode("utf-8", "surrogateescape"))),
        ),
        ports,
        st.binary(max_size=20),
    )
    def test_roundTrip(self, command: int, address: tuple[int, str], port: int, trailing: bytes) -> None:
        """
        Any request parses back, whatever the split point.
        """
        atype, host = address
        message = socks5RequestBytes(command, atype, host, port)
        assertIncremental(
            self, parseSocks5Request, message, Socks5Request(command, host, port, atype), trailing
        )

    @PROPERTY_SETTINGS
    @given(
        st.integers(min_value=0, max_value=255),
        st.one_of(st.ip_addresses().map(str), st.text(max_size=60)),
        ports,
    )
    def test_replyRoundTrip(self, rep: int, host: str, port: int) -> None:
        """
        A reply is a request-shaped message: its address decodes back to
        the host (IPs in canonical form).
        """
        reply = encodeSocks5Reply(rep, host, port)
        self.assertEqual(reply[:3], bytes([5, rep, 0]))
        parsed = parseSocks5Request(reply)
        assert parsed is not None
        request, consumed = parsed
        self.assertEqual(consumed, len(reply))
        self.assertEqual(request.port, port)
        if request.atype == ATYP_DOMAIN:
            self.assertEqual(request.host, host)
        else:
            self.assertEqual(ipaddress.ip_address(request.host), canonicalIP(host))

    @PROPERTY_SETTINGS
    @given(withVersion(5, 300))
    def test_arbitraryBytes(self, data: bytes) -> None:
        try:
            result = parseSocks5Request(data)
        except SocksError:
            return
        if result is not None:
            self.assertIsInstance(result[0], Socks5Request)
            self.assertTrue(7 <= result[1] <= len(data))


class Socks5DatagramTests(SynchronousTestCase):
    """
    RFC 1928 section 7 UDP datagrams C{RSV FRAG ATYP DST.ADDR DST.PORT DATA}.
    """

    def test_example(self) -> None:
        datagram = h("0000 00 01 08080808 0035") + b"query"
        self.assertEqual(parseSocks5Datagram(datagram), Socks5Datagram(0, "8.8.8.8", 53, b"query"))
        self.assertEqual(encodeSocks5Datagram("8.8.8.8", 53, b"query"), datagram)

    def test_domainAndIPv6(self) -> None:
        self.assertEqual(
            encodeSocks5Datagram("example.com", 53, b"", frag=1),
            h("0000 01 03 0b") + b"example.com" + h("0035"),
        )
        self.assertEqual(
            parseSocks5Datagram(h("0000 00 04 00000000000000000000000000000001 0035 ff")),
            Socks5Datagram(0, "::1", 53, b"\xff"),
        )

    def test_reservedIgnored(self) -> None:
        """
        RSV is not checked, and all bytes after the port are data.
        """
        self.assertEqual(
            parseSocks5Datagram(h("0001 00 01 01020304 0001 aabb")),
            Socks5Datagram(0, "1.2.3.4", 1, b"\xaa\xbb"),
        )

    def test_bad(self) -> None:
        """
        Short datagrams and unknown address types raise SocksError.
        """
        for datagram in (
            b"",
            h("0000 00"),
            h("0000 00 01 010203"),
            h("0000 00 01 01020304 00"),
            h("0000 00 03"),
            h("0000 00 03 05 6162"),
            h("0000 00 04 0000"),
            h("0000 00 02 01020304 0050"),
        ):
            self.assertRaises(SocksError, parseSocks5Datagram, datagram)

    @PROPERTY_SETTINGS
    @given(
        st.one_of(
            st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(str),
            domainBytes.map(lambda b: b.decode("utf-8", "surrogateescape")),
        ),
        ports,
        st.binary(max_size=100),
        st.integers(min_value=0, max_value=255),
    )
    def test_roundTrip(self, host: str, port: int, data: bytes, frag: int) -> None:
        """
        Datagrams round-trip, whatever the host, data and FRAG.
        """
        datagram = encodeSocks5Datagram(host, port, data, frag)
        self.assertEqual(datagram[:3], bytes([0, 0, frag]))
        parsed = parseSocks5Datagram(datagram)
        if parsed.host != host:
            # A domain that happens to spell an IP literal is sent as an IP.
            self.assertEqual(ipaddress.ip_address(parsed.host), canonicalIP(host))
        self.assertEqual(parsed, Socks5Datagram(frag, parsed.host, port, data))

    @PROPERTY_SETTINGS
    @given(st.binary(max_size=300))
    def test_arbitraryBytes(self, data: bytes) -> None:
        try:
            parsed = parseSocks5Datagram(data)
        except SocksError:
            return
        self.assertIsInstance(parsed, Socks5Datagram)
        self.assertTrue(data.endswith(parsed.data))


class Socks5NegotiationTests(SynchronousTestCase):
    """
    L{Socks5ServerNegotiation}: the server's side of a whole SOCKS5
    negotiation, greeting to reply, with GOST's answers.
    """

    connect = socks5RequestBytes(CMD_CONNECT, ATYP_DOMAIN, "example.com", 80)

    def test_noAuthentication(self) -> None:
        """
        Without users, a client offering "no authentication" gets it; its
        request follows; bytes after the request stay in the buffer.
        """
        negotiation = Socks5ServerNegotiation()
        buf = h("05 01 00") + self.connect + b"early"
        step = negotiation.receive(buf)
        request = Socks5Request(CMD_CONNECT, "example.com", 80, ATYP_DOMAIN)
        self.assertEqual(step, Socks5Step(len(buf) - 5, h("05 00"), request=request))
        self.assertEqual(negotiation.phase, Socks5Phase.REPLY)
        self.assertEqual(negotiation.request, request)
        self.assertEqual(negotiation.receive(b"early"), Socks5Step())
        self.assertEqual(negotiation.reply(REP_SUCCEEDED, "192.0.2.7", 4000), h("05 00 00 01 c0000207 0fa0"))
        self.assertEqual(negotiation.phase, Socks5Phase.DONE)

    def test_byteByByte(self) -> None:
        """
        Fed one byte more at a time, the machine answers each message as
        soon as it is whole, and the same bytes as when fed at once.
        """
        negotiation = Socks5ServerNegotiation(lambda user, password: (user, password) == ("u", "p"))
        stream = h("05 02 00 02") + h("01 01 75 01 70") + self.connect
        buf = b""
        sent = b""
        phases = []
        for byte in stream:
            buf += bytes([byte])
            step = negotiation.receive(buf)
            self.assertIsNone(step.refused)
            buf = buf[step.consumed :]
            sent += step.send
            phases.append(negotiation.phase)
        self.assertEqual(sent, h("05 02") + h("01 00"))
        self.assertEqual(buf, b"")
        self.assertEqual(negotiation.user, "u")
        self.assertEqual(phases[3], Socks5Phase.USERPASS)
        self.assertEqual(phases[8], Socks5Phase.REQUEST)
        self.assertEqual(phases[-2:], [Socks5Phase.REQUEST, Socks5Phase.REPLY])

    def test_usersNeedUserPass(self) -> None:
        """
        With users, a client that does not offer username/password gets
        "no acceptable methods" and the negotiation ends.
        """
        negotiation = Socks5ServerNegotiation(lambda user, password: True)
        step = negotiation.receive(h("05 01 00") + self.connect)
        self.assertEqual(step, Socks5Step(3, encodeMethodSelection(METHOD_NO_ACCEPTABLE), refused="SOCKS5 client offers no username/password method"))
        self.assertEqual(negotiation.phase, Socks5Phase.FAILED)
        self.assertEqual(negotiation.receive(self.connect), Socks5Step())

    def test_noAcceptableMethod(self) -> None:
        negotiation = Socks5ServerNegotiation()
        step = negotiation.receive(h("05 01 80"))
        self.assertEqual(step, Socks5Step(3, h("05 ff"), refused="SOCKS5 client offers no acceptable method"))

    def test_userPassWithoutUsers(self) -> None:
        """
        Without users, a client that offers only username/password is asked
        for them and let in whatever they are; its user name is kept.
        """
        negotiation = Socks5ServerNegotiation()
        step = negotiation.receive(h("05 01 02") + h("01 05") + b"alice" + h("00") + self.connect)
        self.assertEqual(step.send, h("05 02 01 00"))
        self.assertIsNotNone(step.request)
        self.assertEqual(negotiation.user, "alice")

    def test_wrongPassword(self) -> None:
        seen = []

        def authenticate(user: str, password: str) -> bool:
            seen.append((user, password))
            return False

        negotiation = Socks5ServerNegotiation(authenticate)
        step = negotiation.receive(h("05 01 02") + h("01 05") + b"alice" + h("03") + b"pw!" + self.connect)
        self.assertEqual(step, Socks5Step(3 + 11, h("05 02 01 01"), refused="SOCKS5 authentication failed for user 'alice'"))
        self.assertEqual(seen, [("alice", "pw!")])
        self.assertEqual(negotiation.user, "alice")

    def test_unsupportedCommands(self) -> None:
        """
        A command the driver does not serve is answered "command not
        supported"; UDP ASSOCIATE is a request where the driver serves it.
        """
        for command, name in ((CMD_BIND, "BIND"), (CMD_UDP_ASSOCIATE, "UDP ASSOCIATE"), (0x7E, "0x7e")):
            negotiation = Socks5ServerNegotiation()
            request = socks5RequestBytes(command, ATYP_IPV4, "0.0.0.0", 0)
            step = negotiation.receive(h("05 01 00") + request)
            self.assertEqual(step.send, h("05 00") + encodeSocks5Reply(REP_COMMAND_NOT_SUPPORTED))
            self.assertEqual(step.refused, f"SOCKS5 {name} is not supported")
            self.assertEqual(negotiation.request, Socks5Request(command, "0.0.0.0", 0, ATYP_IPV4))
        negotiation = Socks5ServerNegotiation(commands=frozenset({CMD_CONNECT, CMD_UDP_ASSOCIATE}))
        step = negotiation.receive(h("05 01 00") + socks5RequestBytes(CMD_UDP_ASSOCIATE, ATYP_IPV4, "0.0.0.0", 0))
        self.assertEqual(step.request, Socks5Request(CMD_UDP_ASSOCIATE, "0.0.0.0", 0, ATYP_IPV4))
        self.assertIsNone(step.refused)

    def test_malformed(self) -> None:
        """
        Malformed messages end the negotiation with the parser's reply, after
        what was answered before them.
        """
        cases = [
            (h("04 01 00"), b"", "bad socks5 request: not SOCKS5: version 0x04"),
            (h("05 01 02 02 00"), h("05 02") + encodeUserPassStatus(False), "bad socks5 request: bad username/password version 0x02"),
            (h("05 01 00 05 01 00 09"), h("05 00") + encodeSocks5Reply(REP_ADDRESS_TYPE_NOT_SUPPORTED), "bad socks5 request: unknown address type 0x09"),
        ]
        for stream, send, why in cases:
            negotiation = Socks5ServerNegotiation()
            step = negotiation.receive(stream)
            self.assertEqual((step.send, step.refused), (send, why))
            self.assertEqual(negotiation.phase, Socks5Phase.FAILED)

    def test_replies(self) -> None:
        """
        L{Socks5ServerNegotiation.reply} answers only a waiting request; a
        bound address a reply cannot carry goes as 0.0.0.0:0; a failure
        code ends the negotiation.
        """
        negotiation = Socks5ServerNegotiation()
        self.assertRaises(ValueError, negotiation.reply, REP_SUCCEEDED)
        negotiation.receive(h("05 01 00") + self.connect)
        self.assertEqual(negotiation.reply(REP_SUCCEEDED, "x" * 300, 80), encodeSocks5Reply(REP_SUCCEEDED))
        self.assertRaises(ValueError, negotiation.reply, REP_SUCCEEDED)
        negotiation = Socks5ServerNegotiation()
        negotiation.receive(h("05 01 00") + self.connect)
        self.assertEqual(negotiation.reply(REP_HOST_UNREACHABLE), encodeSocks5Reply(REP_HOST_UNREACHABLE))
        self.assertEqual(negotiation.phase, Socks5Phase.FAILED)
