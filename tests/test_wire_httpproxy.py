"""
Tests for L{gostrelay.wire.httpproxy}: HTTP proxy request heads as the local
proxy entry reads them (spec-relay.md 11), and the responses it writes.
"""

from __future__ import annotations

import base64
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.httpproxy import (
    CONNECTION_ESTABLISHED,
    MAX_HEAD_SIZE,
    HTTPProxyError,
    ProxyRequest,
    ProxyRequestParser,
    encodeResponse,
    forwardRequestHead,
    proxyAuthRequired,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

CURL_CONNECT = (
    b"CONNECT example.com:443 HTTP/1.1\r\n"
    b"Host: example.com:443\r\n"
    b"User-Agent: curl/8\r\n"
    b"Proxy-Connection: Keep-Alive\r\n"
    b"\r\n"
)

CURL_GET = (
    b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
)


def parse(data: bytes) -> ProxyRequest:
    request = ProxyRequestParser().feed(data)
    assert request is not None, data
    return request


def parseInChunks(chunks: list[bytes]) -> tuple[ProxyRequest | None, bytes]:
    """
    Feed C{chunks} in order until a request comes out.

    @return: the request (or C{None}) and every byte after the head: the
        parser's remainder followed by the chunks not fed.
    """
    parser = ProxyRequestParser()
    for i, chunk in enumerate(chunks):
        request = parser.feed(chunk)
        if request is not None:
            return request, parser.remainder + b"".join(chunks[i + 1 :])
    return None, b""


def cutAt(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    C{data} cut at the given offsets (clamped to its length).
    """
    points = [0] + sorted({min(c, len(data)) for c in cuts}) + [len(data)]
    return [data[a:b] for a, b in zip(points[:-1], points[1:], strict=True)]


def request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    host: str = "example.com",
    port: int = 80,
    path: str = "/",
) -> ProxyRequest:
    return ProxyRequest(method, target, "1.1", headers or [], host, port, path)


class ParserTests(SynchronousTestCase):
    """
    L{ProxyRequestParser} reads one head and finds the target.
    """

    def test_curlConnect(self) -> None:
        """
        What curl sends for an HTTPS URL through a proxy.
        """
        parser = ProxyRequestParser()
        result = parser.feed(CURL_CONNECT + b"\x16\x03\x01")
        self.assertEqual(
            result,
            ProxyRequest(
                method="CONNECT",
                target="example.com:443",
                httpVersion="1.1",
                headers=[
                    ("Host", "example.com:443"),
                    ("User-Agent", "curl/8"),
                    ("Proxy-Connection", "Keep-Alive"),
                ],
                host="example.com",
                port=443,
                path="example.com:443",
            ),
        )
        assert result is not None
        self.assertTrue(result.isConnect)
        self.assertEqual(result.address, "example.com:443")
        self.assertEqual(parser.remainder, b"\x16\x03\x01")
        self.assertTrue(parser.done)
        self.assertEqual(result.header("proxy-connection"), "Keep-Alive")
        self.assertEqual(result.header("USER-AGENT"), "curl/8")
        self.assertIsNone(result.header("Proxy-Authorization"))
        self.assertIsNone(result.proxyCredentials())

    def test_curlGet(self) -> None:
        """
        An absolute-URI request with Basic proxy credentials.
        """
        result = parse(CURL_GET)
        self.assertFalse(result.isConnect)
        self.assertEqual(
            (result.method, result.target, result.host, result.port, result.path),
            ("GET", "http://example.com/a?b=1", "example.com", 80, "/a?b=1"),
        )
        self.assertEqual(result.address, "example.com:80")
        self.assertEqual(result.proxyCredentials(), ("u", "p"))
        self.assertEqual(
            forwardRequestHead(result),
            b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        )

    def test_connectIPv6(self) -> None:
        result = parse(b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
        self.assertEqual((result.host, result.port), ("::1", 8080))
        self.assertEqual(result.address, "[::1]:8080")

    def test_absoluteForms(self) -> None:
        """
        Scheme default ports, explicit ports, IPv6 literals, userinfo and an
        empty path.
        """
        cases = {
            "http://example.com": ("example.com", 80, "/"),
            "http://example.com?q": ("example.com", 80, "/?q"),
            "HTTP://Example.COM:8080/x/y?z=1&w": ("Example.COM", 8080, "/x/y?z=1&w"),
            "http://example.com:/a?": ("example.com", 80, "/a?"),
            "http://example.com?q/r": ("example.com", 80, "/?q/r"),
            "http://example.com/a#frag": ("example.com", 80, "/a#frag"),
            "https://example.com/": ("example.com", 443, "/"),
            "http://[2001:db8::1]:81/p": ("2001:db8::1", 81, "/p"),
            "http://[::1]/": ("::1", 80, "/"),
            "http://user:pw@10.0.0.1/x": ("10.0.0.1", 80, "/x"),
        }
        for target, expected in cases.items():
            result = parse(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: ignored\r\n\r\n")
            self.assertEqual((result.host, result.port, result.path), expected, target)

    def test_originForm(self) -> None:
        """
        Without an absolute URI the Host header names the target, port 80
        by default.
        """
        cases = {
            b"example.com": ("example.com", 80),
            b"example.com:8080": ("example.com", 8080),
            b"[::1]:81": ("::1", 81),
            b"10.1.2.3": ("10.1.2.3", 80),
        }
        for host, expected in cases.items():
            result = parse(b"GET /x?y HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            self.assertEqual((result.host, result.port, result.path), expected + ("/x?y",), host)
        result = parse(b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual((result.host, result.port, result.path), ("example.com", 80, "*"))

    def test_http10(self) -> None:
        """
        HTTP/1.0 needs no Host when the target has one.
        """
        result = parse(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
        self.assertEqual((result.httpVersion, result.host, result.headers), ("1.0", "example.com", []))

    def test_missingHostTolerated(self) -> None:
        """
        HTTP/1.1 CONNECT and absolute-URI requests without Host are served
        (GOST uses Go's http.ReadRequest, which does not insist); the Host
        the parser borrows from the target is not reported as a header.
        """
        parser = ProxyRequestParser()
        result = parser.feed(b"CONNECT example.com:443 HTTP/1.1\r\nUser-Agent: x\r\n\r\nrest")
        assert result is not None
        self.assertEqual((result.host, result.port), ("example.com", 443))
        self.assertEqual(result.headers, [("User-Agent", "x")])
        self.assertEqual(parser.remainder, b"rest")
        result = parse(b"GET http://u@example.com:81/p?q HTTP/1.1\r\n\r\n")
        self.assertEqual(
            (result.host, result.port, result.path, result.headers), ("example.com", 81, "/p?q", [])
        )

    def test_missingHostOriginForm(self) -> None:
        """
        An origin-form request without a usable Host cannot be proxied.
        """
        for head in (
            b"GET /x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.0\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: exa mple\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: [example.com]\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: example.com:x\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: example.com:\xb2\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ):
            with self.assertRaises(HTTPProxyError, msg=head) as caught:
                ProxyRequestParser().feed(head)
            self.assertEqual(caught.exception.status, 400, head)

    def test_badTargets(self) -> None:
        """
        CONNECT needs host:port; other targets must be absolute http(s)
        URIs or origin-form.
        """
        for head in (
            b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT example.com:0 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT example.com:99999 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT :443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT ::1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT [::1] HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"CONNECT http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET http://example.com:0/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET http://example.com:http/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET http://[example.com]/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
        ):
            with self.assertRaises(HTTPProxyError, msg=head) as caught:
                ProxyRequestParser().feed(head)
            self.assertEqual(caught.exception.status, 400, head)

    def test_malformed(self) -> None:
        """
        Not HTTP at all is a 400, a TLS ClientHello as soon as its first
        byte arrives.
        """
        for data in (
            b"\x16",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
            b"GET / HTTP/2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"\r\n\r\n",
        ):
            with self.assertRaises(HTTPProxyError, msg=data) as caught:
                ProxyRequestParser().feed(data)
            self.assertEqual(caught.exception.status, 400, data)

    def test_unknownTransferCoding(self) -> None:
        """
        h11's 501 for a transfer coding it cannot frame comes through.
        """
        with self.assertRaises(HTTPProxyError) as caught:
            parse(b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
        self.assertEqual(caught.exception.status, 501)

    def test_headCap(self) -> None:
        """
        A head of exactly 64 KiB is accepted; one byte more is a 431,
        whether it arrives in one piece or in many.
        """
        prefix = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Pad: "
        suffix = b"\r\n\r\n"
        fits = prefix + b"a" * (MAX_HEAD_SIZE - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(fits), MAX_HEAD_SIZE)
        tooBig = prefix + b"a" * (MAX_HEAD_SIZE + 1 - len(prefix) - len(suffix)) + suffix
        for chunkSize in (len(tooBig), 1000, 4096):
            chunks = [fits[i : i + chunkSize] for i in range(0, len(fits), chunkSize)]
            result, rest = parseInChunks(chunks + [b"body"])
            assert result is not None
            self.assertEqual(result.host, "example.com")
            self.assertEqual(rest, b"body")

            parser = ProxyRequestParser()
            with self.assertRaises(HTTPProxyError) as caught:
                for i in range(0, len(tooBig), chunkSize):
                    parser.feed(tooBig[i : i + chunkSize])
            self.assertEqual(caught.exception.status, 431, chunkSize)

    def test_headCapWithoutEnd(self) -> None:
        """
        A head that never ends is refused once it passes the cap, without
        waiting for the blank line.
        """
        parser = ProxyRequestParser()
        self.assertIsNone(parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 60000))
        with self.assertRaises(HTTPProxyError) as caught:
            parser.feed(b"a" * 10000)
        self.assertEqual(caught.exception.status, 431)

    def test_smallerCap(self) -> None:
        """
        The cap is a parameter.
        """
        head = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"
        self.assertIsNotNone(ProxyRequestParser(len(head)).feed(head))
        with self.assertRaises(HTTPProxyError) as caught:
            ProxyRequestParser(len(head) - 1).feed(head)
        self.assertEqual(caught.exception.status, 431)

    def test_errorsAreSticky(self) -> None:
        """
        After an error every feed raises it again.
        """
        parser = ProxyRequestParser()
        with self.assertRaises(HTTPProxyError):
            parser.feed(b"CONNECT nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        with self.assertRaises(HTTPProxyError) as caught:
            parser.feed(b"more")
        self.assertEqual(caught.exception.status, 400)

    def test_oneRequestOnly(self) -> None:
        """
        Once a request is out, pipelined bytes are in the remainder and the
        parser refuses more.
        """
        parser = ProxyRequestParser()
        result = parser.feed(CURL_GET + CURL_GET)
        assert result is not None
        self.assertEqual(parser.remainder, CURL_GET)
        self.assertRaises(RuntimeError, parser.feed, b"x")

    def test_emptyFeed(self) -> None:
        """
        An empty chunk is not end-of-stream (as it would be to h11).
        """
        parser = ProxyRequestParser()
        self.assertIsNone(parser.feed(b""))
        self.assertIsNone(parser.feed(CURL_CONNECT[:10]))
        self.assertIsNone(parser.feed(b""))
        self.assertIsNotNone(parser.feed(CURL_CONNECT[10:]))

    def test_everySplit(self) -> None:
        """
        Every way of cutting a request in two, and byte-by-byte delivery,
        give the same request and the same bytes after the head.
        """
        cases = [
            (CURL_CONNECT, b"\x16\x03\x01\x00"),
            (CURL_GET, b""),
            (b"POST http://a:81/x HTTP/1.1\nHost: a:81\nContent-Length: 4\n\n", b"body"),
            (b"CONNECT [::1]:8080 HTTP/1.1\r\n\r\n", b"x"),
        ]
        for head, trailing in cases:
            data = head + trailing
            expected, rest = parseInChunks([data])
            assert expected is not None
            self.assertEqual(rest, trailing)
            for i in range(len(data) + 1):
                self.assertEqual(parseInChunks([data[:i], data[i:]]), (expected, trailing), (head, i))
            self.assertEqual(parseInChunks([bytes([b]) for b in data]), (expected, trailing), head)
            for i in range(len(head)):
                self.assertEqual(parseInChunks([head[:i]]), (None, b""), (head, i))

    @PROPERTY_SETTINGS
    @given(
        st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS"]),
        st.sampled_from(["http", "https"]),
        st.one_of(
            st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
            st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(str),
        ),
        st.one_of(st.none(), st.integers(min_value=1, max_value=0xFFFF)),
        st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]*)*(\?[A-Za-z0-9/?=&%-]*)?", fullmatch=True),
        st.lists(
            st.tuples(
                st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True),
                st.text(alphabet=string.ascii_letters + string.digits + " ,;=/", max_size=20).map(str.strip),
            ),
            max_size=5,
        ),
        st.binary(max_size=50),
        st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    )
    def test_roundTrip(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        path: str,
        headers: list[tuple[str, str]],
        trailing: bytes,
        cuts: list[int],
    ) -> None:
        """
        Absolute-URI requests come back as sent, however the bytes are cut.
        """
        authority = f"[{host}]" if ":" in host else host
        if port is not None:
            authority += f":{port}"
        target = f"{scheme}://{authority}{path}"
        allHeaders = [("Host", authority)] + headers
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in allHeaders) + "\r\n"
        data = head.encode("ascii") + trailing
        chunks = cutAt(data, cuts)
        result, rest = parseInChunks(chunks)
        assert result is not None
        self.assertEqual(rest, trailing)
        expectedPath = path if path.startswith("/") else "/" + path
        self.assertEqual(
            result,
            ProxyRequest(
                method,
                target,
                "1.1",
                allHeaders,
                host,
                port or {"http": 80, "https": 443}[scheme],
                expectedPath,
            ),
        )
        forwarded = forwardRequestHead(result).decode("ascii")
        self.assertTrue(forwarded.startswith(f"{method} {expectedPath} HTTP/1.1\r\nHost: {authority}\r\n"))
        self.assertTrue(forwarded.endswith("Connection: close\r\n\r\n"))

    @PROPERTY_SETTINGS
    @given(
        st.one_of(
            st.binary(max_size=300),
            st.text(alphabet="GETCONNECT /:.[]?@\r\n0123456789HTPabxyz-", max_size=200).map(str.encode),
            st.lists(
                st.sampled_from(
                    [
                        b"GET ",
                        b"CONNECT ",
                        b"http://",
                        b"a.b",
                        b":80",
                        b"[::1]",
                        b"/",
                        b" HTTP/1.1",
                        b" HTTP/1.0",
                    ]
                    + [
                        b"\r\n",
                        b"\n",
                        b"Host: ",
                        b"Host: a:1",
                        b"Proxy-Authorization: Basic ",
                        b"dTpw",
                        b": ",
                    ]
                ),
                max_size=20,
            ).map(b"".join),
        ),
        st.lists(st.integers(min_value=0, max_value=300), max_size=4),
    )
    def test_arbitraryBytes(self, data: bytes, cuts: list[int]) -> None:
        """
        Whatever arrives, in whatever pieces, the parser returns nothing, a
        request, or raises HTTPProxyError; a request always has a host and
        a port in range, and its helpers do not fail.
        """
        chunks = cutAt(data, cuts)
        try:
            result, _ = parseInChunks(chunks)
        except HTTPProxyError as e:
            self.assertIn(e.status, (400, 431, 501))
            return
        if result is not None:
            self.assertTrue(result.host)
            self.assertTrue(0 < result.port <= 0xFFFF)
            result.proxyCredentials()
            forwardRequestHead(result)


class ProxyRequestTests(SynchronousTestCase):
    """
    The helpers on L{ProxyRequest}.
    """

    def test_credentials(self) -> None:
        """
        Go's parseBasicAuth: case-insensitive scheme, strict base64, split
        at the first colon; anything else is no credentials.
        """

        def basic(raw: bytes) -> str:
            return "Basic " + base64.b64encode(raw).decode()

        cases: list[tuple[str, tuple[str, str] | None]] = [
            ("Basic dTpw", ("u", "p")),
            ("basic dTpw", ("u", "p")),
            ("BASIC dTpw", ("u", "p")),
            (basic(b"user:pa:ss"), ("user", "pa:ss")),
            (basic(b":"), ("", "")),
            (basic(b"\xc3\xa9:\xff"), ("\u00e9", "\udcff")),
            (basic(b"nocolon"), None),
            ("Basic dTpw!", None),
            ("Basic dTp", None),
            ("Basic", None),
            ("Bearer dTpw", None),
            ("Digest username=u", None),
            ("", None),
        ]
        for value, expected in cases:
            req = request(headers=[("Proxy-Authorization", value)])
            self.assertEqual(req.proxyCredentials(), expected, value)
        self.assertIsNone(request().proxyCredentials())
        lower = request(headers=[("proxy-authorization", "Basic dTpw")])
        self.assertEqual(lower.proxyCredentials(), ("u", "p"))

    def test_header(self) -> None:
        """
        The first header of that name, in any case.
        """
        req = request(headers=[("X-A", "1"), ("x-a", "2"), ("Host", "h")])
        self.assertEqual(req.header("x-A"), "1")
        self.assertEqual(req.header("HOST"), "h")
        self.assertIsNone(req.header("X-B"))

    def test_address(self) -> None:
        self.assertEqual(request(host="example.com", port=80).address, "example.com:80")
        self.assertEqual(request(host="2001:db8::1", port=443).address, "[2001:db8::1]:443")
        self.assertFalse(request().isConnect)
        self.assertTrue(request(method="CONNECT").isConnect)


class ForwardRequestHeadTests(SynchronousTestCase):
    """
    L{forwardRequestHead} turns a proxy request into an origin request.
    """

    def test_stripsProxyHeaders(self) -> None:
        """
        Proxy-Authorization, Proxy-Connection, Connection and Keep-Alive go,
        in any case; the rest keep their order and case.
        """
        req = request(
            target="/x",
            path="/x",
            headers=[
                ("Host", "example.com"),
                ("proxy-authorization", "Basic dTpw"),
                ("Accept", "*/*"),
                ("PROXY-CONNECTION", "keep-alive"),
                ("Connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("X-Custom", "a, b"),
            ],
        )
        self.assertEqual(
            forwardRequestHead(req),
            b"GET /x HTTP/1.1\r\n"
            b"Host: example.com\r\n"
            b"Accept: */*\r\n"
            b"X-Custom: a, b\r\n"
            b"Connection: close\r\n"
            b"\r\n",
        )

    def test_addsHost(self) -> None:
        """
        A missing Host is added first, without :80, IPv6 bracketed.
        """
        cases = [
            (("example.com", 80), "example.com"),
            (("example.com", 8080), "example.com:8080"),
            (("::1", 80), "[::1]"),
            (("::1", 443), "[::1]:443"),
        ]
        for (host, port), value in cases:
            req = request(target="/", host=host, port=port, headers=[("Accept", "*/*")])
            self.assertEqual(
                forwardRequestHead(req),
                f"GET / HTTP/1.1\r\nHost: {value}\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode(),
            )

    def test_absoluteURIHostWins(self) -> None:
        """
        For an absolute URI the Host sent is the URI's authority (RFC 9112
        3.2.2, and what Go's Request.Write does for GOST), whatever the
        client's Host said.
        """
        result = parse(
            b"POST http://u:p@Example.com:8080/p HTTP/1.0\r\n"
            b"X-A: 1\r\nHost: elsewhere\r\nContent-Length: 2\r\n\r\nhi"
        )
        self.assertEqual(
            forwardRequestHead(result),
            b"POST /p HTTP/1.1\r\nHost: Example.com:8080\r\nX-A: 1\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n",
        )

    def test_originFormKeepsHost(self) -> None:
        """
        An origin-form target that contains "://" is still origin-form.
        """
        result = parse(b"GET /r?u=http://evil/ HTTP/1.1\r\nHost: example.com:81\r\n\r\n")
        self.assertEqual((result.host, result.port), ("example.com", 81))
        self.assertEqual(
            forwardRequestHead(result),
            b"GET /r?u=http://evil/ HTTP/1.1\r\nHost: example.com:81\r\nConnection: close\r\n\r\n",
        )

    def test_latin1RoundTrip(self) -> None:
        """
        Header bytes beyond ASCII are forwarded unchanged.
        """
        result = parse(b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9 \xff\r\n\r\n")
        self.assertEqual(result.header("x-name"), "caf\u00e9 \u00ff")
        self.assertIn(b"\r\nX-Name: caf\xe9 \xff\r\n", forwardRequestHead(result))


class ResponseTests(SynchronousTestCase):
    """
    The responses the proxy writes itself.
    """

    def test_connectionEstablished(self) -> None:
        self.assertEqual(
            CONNECTION_ESTABLISHED,
            b"HTTP/1.1 200 Connection established\r\nProxy-Agent: gost/3.0\r\n\r\n",
        )

    def test_proxyAuthRequired(self) -> None:
        self.assertEqual(
            proxyAuthRequired(),
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="gost"\r\n'
            b"Proxy-Agent: gost/3.0\r\n"
            b"Content-Length: 0\r\n"
            b"\r\n",
        )
        self.assertIn(
            b'Proxy-Authenticate: Basic realm="my \\"realm\\""\r\n', proxyAuthRequired('my "realm"')
        )

    def test_encodeResponse(self) -> None:
        """
        Reason from http.HTTPStatus; Content-Length unless given, or a
        bodiless 200, 1xx or 204.
        """
        cases = [
            (encodeResponse(503), b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
            (encodeResponse(403, body=b"no"), b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"),
            (encodeResponse(200), b"HTTP/1.1 200 OK\r\n\r\n"),
            (encodeResponse(200, body=b"x"), b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
            (encodeResponse(204), b"HTTP/1.1 204 No Content\r\n\r\n"),
            (encodeResponse(599), b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"),
            (
                encodeResponse(200, "Connection established", [("Proxy-Agent", "gost/3.0")]),
                CONNECTION_ESTABLISHED,
            ),
            (
                encodeResponse(400, "Nope", [("content-length", "0"), ("X", "y")], b""),
                b"HTTP/1.1 400 Nope\r\ncontent-length: 0\r\nX: y\r\n\r\n",
            ),
        ]
        for actual, expected in cases:
            self.assertEqual(actual, expected)

    def test_error(self) -> None:
        error = HTTPProxyError(431)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.status, 431)
