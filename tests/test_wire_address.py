"""
Tests for L{gostrelay.wire.address}: C{ATYP ADDR PORT} encoding (spec-relay.md
1.4.2, also used by the UDP tunnel framing) and C{"host:port"} strings with
Go's C{net.SplitHostPort}/C{net.JoinHostPort} semantics as GOST uses them.
"""

from __future__ import annotations

import ipaddress
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

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
from tests.vectors import hexBytes

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

ports = st.integers(min_value=0, max_value=0xFFFF)

#: Domain "names" as GOST sees them: up to 255 arbitrary bytes (carried in a
#: str through surrogateescape), or ordinary text that fits.
domains = st.one_of(
    st.binary(max_size=255).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(max_size=63),
)

#: (atype, host, port) triples that encode.
socksAddresses = st.one_of(
    st.tuples(st.just(ATYP_IPV4), st.ip_addresses(v=4).map(str), ports),
    st.tuples(st.just(ATYP_IPV6), st.ip_addresses(v=6).map(str), ports),
    st.tuples(st.just(ATYP_DOMAIN), domains, ports),
)


class SplitHostPortTests(SynchronousTestCase):
    """
    L{splitHostPort} follows Go's net.SplitHostPort plus GOST's ParseFrom
    defaults: no port is port 0, an empty host stays empty.
    """

    def test_valid(self) -> None:
        """
        The forms GOST accepts, including the empty host (":53", what
        "this machine" looks like) and bare hosts without a port.
        """
        cases = {
            ":53": ("", 53),
            ":0": ("", 0),
            "host": ("host", 0),
            "host:80": ("host", 80),
            "example.com:65535": ("example.com", 65535),
            "1.2.3.4:5353": ("1.2.3.4", 5353),
            "[::1]:80": ("::1", 80),
            "[2001:db8::1]:443": ("2001:db8::1", 443),
            "[::1]": ("::1", 0),
            "::1": ("::1", 0),
            "2001:db8::1": ("2001:db8::1", 0),
            "[1.2.3.4]:80": ("1.2.3.4", 80),
            "[0.0.0.0::2223]:0": ("0.0.0.0::2223", 0),
        }
        for address, expected in cases.items():
            self.assertEqual(splitHostPort(address), expected, address)

    def test_invalid(self) -> None:
        """
        A non-numeric or out-of-range port, an empty address or broken
        brackets raise AddressError (spec 1.4.2: the current codec errors).
        """
        invalid = (
            "",
            "a:b",
            "host:70000",
            "host:65536",
            "host:-1",
            "host: 80",
            "host:0x50",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[::1]:99999",
        )
        for address in invalid:
            self.assertRaises(AddressError, splitHostPort, address)

    # KNOWN CODEC BUG: this test fails against the current gostrelay/wire code
    # on purpose (see the docstring); do not skip it, fix the codec.
    def test_nonASCIIDigitPort(self) -> None:
        """
        Only ASCII digits make a port (Go's strconv.Atoi); other Unicode
        "digits" are a bad port, reported as AddressError like any bad port.

        KNOWN CODEC BUG (expected to fail until gostrelay/wire fixes it):
        _parsePort checks str.isdigit(), which is true for "\\u00b2" (superscript
        two) and for Arabic-Indic digits, so
        C{splitHostPort("host:\\u00b2")} raises a bare ValueError from int()
        (not AddressError), and C{splitHostPort("host:\\u0668\\u0660")}
        returns C{("host", 80)} where GOST rejects the address.
        """
        self.assertRaises(AddressError, splitHostPort, "host:\u00b2")
        self.assertRaises(AddressError, splitHostPort, "host:\u0668\u0660")
        self.assertRaises(AddressError, splitHostPort, "host:\uff18\uff10")

    @PROPERTY_SETTINGS
    @given(st.text(alphabet=string.printable + "\u00e9", max_size=30))
    def test_onlyAddressError(self, address: str) -> None:
        """
        Whatever the (ASCII-ish) input, splitHostPort returns a host and a
        port in range or raises AddressError, never another exception.
        """
        try:
            host, port = splitHostPort(address)
        except AddressError:
            return
        self.assertIsInstance(host, str)
        self.assertIsInstance(port, int)
        self.assertTrue(0 <= port <= 0xFFFF, port)


class JoinHostPortTests(SynchronousTestCase):
    """
    L{joinHostPort} is Go's net.JoinHostPort: bracket any host with a colon.
    """

    def test_join(self) -> None:
        """
        IPv6 literals (and anything else with a colon) get brackets.
        """
        cases = [
            (("example.com", 80), "example.com:80"),
            (("1.2.3.4", 5353), "1.2.3.4:5353"),
            (("::1", 80), "[::1]:80"),
            (("2001:db8::1", 443), "[2001:db8::1]:443"),
            (("", 53), ":53"),
            (("0.0.0.0::2223", 0), "[0.0.0.0::2223]:0"),
        ]
        for (host, port), expected in cases:
            self.assertEqual(joinHostPort(host, port), expected)

    @PROPERTY_SETTINGS
    @given(
        st.one_of(
            st.ip_addresses().map(str),
            st.text(alphabet=string.ascii_letters + string.digits + ".-_:", max_size=40),
        ),
        ports,
    )
    def test_roundTrip(self, host: str, port: int) -> None:
        """
        splitHostPort undoes joinHostPort for IP literals and for names
        (even names containing colons, which come back from brackets).
        """
        self.assertEqual(splitHostPort(joinHostPort(host, port)), (host, port))


class AtypeForHostTests(SynchronousTestCase):
    """
    L{atypeForHost} picks the ATYP the way GOST's encoder does (1.4.2).
    """

    def test_atypes(self) -> None:
        """
        IPv4 and v4-mapped IPv6 literals are IPv4, other IPv6 literals IPv6
        (bracketed or not), everything else, including "", a domain.
        """
        cases = {
            "1.2.3.4": ATYP_IPV4,
            "0.0.0.0": ATYP_IPV4,
            "::ffff:1.2.3.4": ATYP_IPV4,
            "[::ffff:1.2.3.4]": ATYP_IPV4,
            "2001:db8::1": ATYP_IPV6,
            "[2001:db8::1]": ATYP_IPV6,
            "::": ATYP_IPV6,
            "::1": ATYP_IPV6,
            "example.com": ATYP_DOMAIN,
            "localhost": ATYP_DOMAIN,
            "1.2.3.4.5": ATYP_DOMAIN,
            "256.1.1.1": ATYP_DOMAIN,
            "0.0.0.0::2223": ATYP_DOMAIN,
            "": ATYP_DOMAIN,
        }
        for host, atype in cases.items():
            self.assertEqual(atypeForHost(host), atype, host)

    @PROPERTY_SETTINGS
    @given(st.ip_addresses())
    def test_ipLiterals(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """
        Every IP literal gets an IP type, IPv4 exactly when it has a 4-byte
        form, and it encodes under that type.
        """
        hasV4Form = ip.version == 4 or ip.ipv4_mapped is not None  # type: ignore[union-attr]
        atype = atypeForHost(str(ip))
        self.assertEqual(atype, ATYP_IPV4 if hasV4Form else ATYP_IPV6)
        encoded = encodeSocksAddress(atype, str(ip), 1)
        self.assertEqual(len(encoded), 1 + (4 if hasV4Form else 16) + 2)


class SocksAddressTests(SynchronousTestCase):
    """
    L{encodeSocksAddress} and L{decodeSocksAddress}: C{ATYP ADDR PORT}.
    """

    def test_specExamples(self) -> None:
        """
        The address parts of the spec's examples (1.7 UDP tunnel datagrams
        and the relay Addr features).
        """
        cases = [
            ((ATYP_IPV4, "1.2.3.4", 5353), "01 01020304 14e9"),
            ((ATYP_DOMAIN, "dns.google", 53), "03 0a 646e732e676f6f676c65 0035"),
            ((ATYP_DOMAIN, "example.com", 80), "03 0b 6578616d706c652e636f6d 0050"),
            ((ATYP_DOMAIN, "", 53), "03 00 0035"),
            ((ATYP_IPV6, "2001:db8::1", 443), "04 20010db8000000000000000000000001 01bb"),
            ((ATYP_IPV6, "::", 2222), "04" + "00" * 16 + "08ae"),
            ((ATYP_IPV4, "203.0.113.5", 51000), "01 cb007105 c738"),
        ]
        for (atype, host, port), text in cases:
            data = hexBytes(text)
            self.assertEqual(encodeSocksAddress(atype, host, port), data, text)
            self.assertEqual(decodeSocksAddress(data), (atype, host, port, len(data)), text)

    def test_decodeAtOffset(self) -> None:
        """
        Decoding starts at C{offset} and reports where the address ends, so
        callers can find the payload after it.
        """
        data = b"\x00\x05\xff" + hexBytes("01 01020304 14e9") + b"hello"
        self.assertEqual(decodeSocksAddress(data, 3), (ATYP_IPV4, "1.2.3.4", 5353, 10))
        self.assertEqual(data[10:], b"hello")

    def test_v4MappedAsIPv4(self) -> None:
        """
        A v4-mapped IPv6 host under ATYP IPv4 is written as its 4 bytes; a
        plain IPv6 host cannot be IPv4.
        """
        self.assertEqual(encodeSocksAddress(ATYP_IPV4, "::ffff:1.2.3.4", 80), hexBytes("01 01020304 0050"))
        self.assertRaises(AddressError, encodeSocksAddress, ATYP_IPV4, "2001:db8::1", 80)

    def test_encodeErrors(self) -> None:
        """
        Out-of-range ports, unknown types and domains over 255 bytes are
        AddressError; exactly 255 bytes is fine.
        """
        self.assertRaises(AddressError, encodeSocksAddress, ATYP_DOMAIN, "a", 0x10000)
        self.assertRaises(AddressError, encodeSocksAddress, ATYP_DOMAIN, "a", -1)
        self.assertRaises(AddressError, encodeSocksAddress, 2, "1.2.3.4", 1)
        self.assertRaises(AddressError, encodeSocksAddress, 5, "1.2.3.4", 1)
        self.assertRaises(AddressError, encodeSocksAddress, ATYP_DOMAIN, "a" * 256, 1)
        self.assertRaises(AddressError, encodeSocksAddress, ATYP_DOMAIN, "\u00e9" * 128, 1)
        self.assertEqual(len(encodeSocksAddress(ATYP_DOMAIN, "a" * 255, 1)), 2 + 255 + 2)

    # KNOWN CODEC BUG: this test fails against the current gostrelay/wire code
    # on purpose (see the docstring); do not skip it, fix the codec.
    def test_encodeHostNotMatchingType(self) -> None:
        """
        A host that is not an address of the requested type is an
        AddressError, like the other encoding errors (callers such as
        AddrFeature.encodeData only translate AddressError).

        KNOWN CODEC BUG (expected to fail until gostrelay/wire fixes it):
        the ipaddress ValueError escapes, e.g.
        C{encodeSocksAddress(ATYP_IPV4, "example.com", 80)} raises
        C{ValueError: 'example.com' does not appear to be an IPv4 or IPv6
        address} and C{encodeSocksAddress(ATYP_IPV6, "1.2.3.4", 80)} raises
        C{ipaddress.AddressValueError}.
        """
        mismatched = [(ATYP_IPV4, "example.com"), (ATYP_IPV4, ""), (ATYP_IPV6, "1.2.3.4"), (ATYP_IPV6, "example.com")]
        for atype, host in mismatched:
            self.assertRaises(AddressError, encodeSocksAddress, atype, host, 80)

    def test_decodeErrors(self) -> None:
        """
        Unknown ATYP (spec: anything but 1, 3, 4, e.g. 5) and short input are
        AddressError.
        """
        bad = [
            b"",
            hexBytes("05 01020304 0050"),
            hexBytes("00 01020304 0050"),
            hexBytes("02 01020304 0050"),
            hexBytes("01 01020304 00"),
            hexBytes("04") + b"\x00" * 17,
            hexBytes("03"),
            hexBytes("03 05 616263 0050"),
            hexBytes("03 00 00"),
        ]
        for data in bad:
            self.assertRaises(AddressError, decodeSocksAddress, data)
        self.assertRaises(AddressError, decodeSocksAddress, hexBytes("01 01020304 0050"), 7)
        self.assertRaises(AddressError, decodeSocksAddress, hexBytes("01 01020304 0050"), 1)

    @PROPERTY_SETTINGS
    @given(socksAddresses, st.binary(max_size=8), st.binary(max_size=8))
    def test_roundTrip(self, address: tuple[int, str, int], prefix: bytes, trailer: bytes) -> None:
        """
        decode(encode(a)) == a at any offset, with trailing bytes untouched.
        """
        atype, host, port = address
        encoded = encodeSocksAddress(atype, host, port)
        data = prefix + encoded + trailer
        self.assertEqual(decodeSocksAddress(data, len(prefix)), (atype, host, port, len(prefix) + len(encoded)))

    @PROPERTY_SETTINGS
    @given(
        st.one_of(
            st.binary(max_size=40),
            st.tuples(st.sampled_from([1, 3, 4, 0, 5]), st.binary(max_size=30)).map(lambda t: bytes([t[0]]) + t[1]),
        ),
        st.integers(min_value=0, max_value=4),
    )
    def test_decodeArbitrary(self, data: bytes, offset: int) -> None:
        """
        Arbitrary bytes decode or raise AddressError, never anything else;
        what decodes encodes back to exactly the bytes it was read from.
        """
        try:
            atype, host, port, end = decodeSocksAddress(data, offset)
        except AddressError:
            return
        self.assertTrue(offset < end <= len(data))
        self.assertIn(atype, (ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6))
        self.assertEqual(encodeSocksAddress(atype, host, port), data[offset:end])
