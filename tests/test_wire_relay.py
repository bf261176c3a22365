"""
Tests for L{gostrelay.wire.relay}, the relay request/response codec
(spec-relay.md section 1).

Three layers:

  - L{GoldenVectorTests}: one test per recorded GOST case in the
    vectors; decoding must give the recorded fields and encoding those
    fields must give the recorded bytes.
  - property tests (hypothesis): round trips, arbitrary splits of the input,
    and garbage input raising nothing but L{RelayDecodeError}.
  - L{SpecEdgeCaseTests} and friends: the corner cases spec section 1 spells
    out, written as literal bytes so they do not depend on the encoder.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.address import ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6
from gostrelay.wire.relay import (
    FLAG_UDP,
    STATUS_TEXT,
    AddrFeature,
    Command,
    FeatureType,
    Network,
    NetworkFeature,
    OpaqueFeature,
    RelayDecodeError,
    RelayEncodeError,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    Status,
    TunnelFeature,
    UserAuthFeature,
    connectRequest,
    decodeFeatures,
    decodeRequest,
    decodeResponse,
    encodeFeatures,
    encodeResponse,
    statusText,
)
from tests import vectors

#: Name prefixes of the index.json cases that are plain relay headers
#: (possibly followed by payload) and need nothing but this codec.
RELAY_CASE_PREFIXES = (
    "codec_",
    "client_connect_tcp_",
    "client_connect_udp_",
    "client_bind_tcp_",
    "client_bind_udp_",
    "server_resp_",
)

#: Cases that must be among them: if the index loses one, a test fails.
REQUIRED_CASES = (
    "codec_req_connect_ipv4_noauth",
    "codec_req_unknown_feature",
    "codec_resp_ok",
    "codec_resp_internal_server_error",
    "codec_resp_ok_addr_ipv6_loopback",
    "codec_resp_ok_addr_domain",
    "client_connect_tcp_ipv4_noauth_nodelay",
    "client_connect_tcp_ipv6_auth_nodelay",
    "client_connect_tcp_domain_auth_nodelay",
    "client_connect_tcp_auth_delayed_first_write_hello",
    "client_connect_tcp_auth_nodelay_then_hello",
    "client_connect_udp_ipv4_auth_nodelay",
    "client_connect_udp_auth_delayed_first_write_hello",
    "client_bind_tcp_auth_port_only",
    "client_bind_tcp_noauth_loopback",
    "server_resp_bind_tcp_ok",
    "server_resp_unknown_cmd_associate",
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def hexBytes(text: str) -> bytes:
    """
    Bytes from spec-style hex (spaces and C{|} separators allowed).
    """
    return vectors.hexBytes(text)


def tlv(ftype: int, data: bytes) -> bytes:
    """
    A feature TLV, built by hand so edge-case tests do not trust the encoder.
    """
    return struct.pack(">BH", ftype, len(data)) + data


def header(code: int, body: bytes, version: int = 1) -> bytes:
    return struct.pack(">BBH", version, code, len(body)) + body


# ---------------------------------------------------------------------------
# index.json field conventions <-> feature objects


def featureFromFields(fields: dict) -> object:
    """
    Build a feature object from a vector's field dict (not from a decoded
    object), so that encoding it is an independent check of the encoder.
    """
    kind = fields["kind"]
    if kind == "userauth":
        return UserAuthFeature(fields.get("username", fields.get("user")), fields["password"])
    if kind == "addr":
        return AddrFeature(fields["host"], fields["port"], fields["atype"])
    if kind == "network":
        return NetworkFeature(fields["network"])
    if kind == "tunnel":
        return TunnelFeature(bytes.fromhex(fields.get("raw", fields.get("hex"))))
    if kind == "opaque":
        return OpaqueFeature(fields["type"], bytes.fromhex(fields.get("raw", fields.get("hex"))))
    raise AssertionError(f"unknown feature kind in vector: {fields!r}")


def fieldsFromFeature(feature: object) -> dict:
    """
    Describe a decoded feature in index.json's spelling.
    """
    if isinstance(feature, UserAuthFeature):
        return {"kind": "userauth", "type": 1, "username": feature.username, "password": feature.password}
    if isinstance(feature, AddrFeature):
        return {"kind": "addr", "type": 2, "atype": feature.atype, "host": feature.host, "port": feature.port}
    if isinstance(feature, NetworkFeature):
        return {"kind": "network", "type": 4, "network": feature.network, "network_name": feature.name}
    if isinstance(feature, TunnelFeature):
        return {"kind": "tunnel", "type": 3, "raw": feature.raw.hex()}
    if isinstance(feature, OpaqueFeature):
        return {"kind": "opaque", "type": feature.featureType, "raw": feature.raw.hex()}
    raise AssertionError(f"decoder produced an unknown feature object: {feature!r}")


_COMPARED_KEYS = ("kind", "type", "username", "password", "atype", "host", "port", "network", "network_name", "raw")


def normalizeFields(fields: dict) -> dict:
    """
    The subset of a vector's feature fields that L{fieldsFromFeature} also
    produces (index.json has no C{len}; transcripts spell C{user}).
    """
    fields = dict(fields)
    if "user" in fields:
        fields["username"] = fields.pop("user")
    if fields.get("kind") in ("opaque", "tunnel") and "raw" not in fields and "hex" in fields:
        fields["raw"] = fields["hex"]
    return {k: fields[k] for k in _COMPARED_KEYS if k in fields}


def commandByte(value: object) -> int:
    """
    index.json spells C{cmd} as C{"0x01"}, transcripts as C{1}.
    """
    return int(value, 16) if isinstance(value, str) else int(value)  # type: ignore[arg-type]


def splitAuth(auth: str | None) -> tuple[str | None, str]:
    if auth is None:
        return None, ""
    username, _, password = auth.partition(":")
    return username, password


def feedPieces(parser, pieces):  # type: ignore[no-untyped-def]
    """
    Feed C{pieces} to C{parser} until it produces a message.

    @return: C{(message, rest)}; C{rest} is the parser's remainder followed by
        the pieces that were never fed (a finished parser takes no more), or
        C{(None, b"")} if the pieces never made a whole message.
    """
    for index, piece in enumerate(pieces):
        message = parser.feed(piece)
        if message is not None:
            return message, parser.remainder + b"".join(pieces[index + 1 :])
    return None, b""


# ---------------------------------------------------------------------------
# golden vectors


class _VectorChecks:
    """
    The checks run for one index.json case; mixed into L{GoldenVectorTests}
    whose generated methods call L{checkCase}.
    """

    def checkCase(self, name: str) -> None:
        c = vectors.case(name)
        data = bytes.fromhex(c["hex"])
        self.assertEqual(
            vectors.caseFileBytes(name), data, f"{name}: {c['file']} differs from the hex in index.json"
        )
        if c["direction"] == "client->server":
            self.checkRequestCase(name, c, data)
        elif c["direction"] == "server->client":
            self.checkResponseCase(name, c, data)
        else:
            self.fail(f"{name}: unexpected direction {c['direction']!r}")

    def checkRequestCase(self, name: str, c: dict, data: bytes) -> None:
        fields = c.get("fields")
        parser = RequestParser()
        request = parser.feed(data)
        self.assertIsNotNone(request, f"{name}: parser wants more than the {len(data)} recorded bytes")
        assert request is not None
        headerBytes = data[: len(data) - len(parser.remainder)]

        if fields is None:
            # No decoded fields recorded: at least decode -> encode must give
            # the same bytes back and nothing may be left over.
            self.assertEqual(parser.remainder, b"", f"{name}: unexpected remainder")
            self.assertEqual(request.encode(), data, f"{name}: decode -> encode round trip")
            self.assertEqual(decodeRequest(data), request, f"{name}: decodeRequest")
            return

        expectedFields = fields.get("request", fields)
        self.assertEqual(request.version, expectedFields["version"], f"{name}: version")
        self.assertEqual(request.cmd, commandByte(expectedFields["cmd"]), f"{name}: cmd")
        self.assertEqual(
            [fieldsFromFeature(f) for f in request.features],
            [self._expectedDescription(f) for f in expectedFields["features"]],
            f"{name}: decoded features",
        )

        expected = Request(
            commandByte(expectedFields["cmd"]),
            tuple(featureFromFields(f) for f in expectedFields["features"]),  # type: ignore[misc]
            expectedFields["version"],
        )
        self.assertEqual(request, expected, f"{name}: decoded request object")
        self.assertEqual(expected.encode(), headerBytes, f"{name}: encoding the recorded fields")

        # What follows the header is the first payload, already framed for
        # the stage after the header (raw for TCP, LEN+DATA for UDP CONNECT).
        network = fields.get("network", "tcp")
        if "first_write" in fields:
            payload = fields["first_write"].encode("utf-8")
            if network == "udp":
                payload = struct.pack(">H", len(payload)) + payload
        else:
            payload = b""
        self.assertEqual(parser.remainder, payload, f"{name}: parser remainder (bytes after the header)")
        self.assertEqual(headerBytes + payload, data, f"{name}: header + payload")
        self.assertTrue(parser.done, f"{name}: parser not done")

        # The recorded write boundaries must not change the result.
        message, rest = feedPieces(RequestParser(), vectors.caseWrites(name))
        self.assertEqual(message, expected, f"{name}: request fed as the recorded writes")
        self.assertEqual(rest, payload, f"{name}: remainder when fed as the recorded writes")

        # Strict decoding accepts the header alone and rejects trailing bytes.
        self.assertEqual(decodeRequest(headerBytes), expected, f"{name}: decodeRequest of the header")
        if payload:
            self.assertRaises(RelayDecodeError, decodeRequest, data)

        self.assertEqual(request.network, network, f"{name}: Request.network")
        username, password = splitAuth(fields.get("auth"))
        self.assertEqual(
            request.userAuth,
            None if username is None else UserAuthFeature(username, password),
            f"{name}: Request.userAuth",
        )

        if name.startswith("client_connect_"):
            self.assertEqual(request.command, Command.CONNECT, f"{name}: command")
            self.assertIsNotNone(request.addr, f"{name}: no Addr")
            self.assertEqual(request.addr.address, fields["address"], f"{name}: Addr as host:port")  # type: ignore[union-attr]
            built = connectRequest(fields["address"], network, username, password)
            self.assertEqual(built, expected, f"{name}: connectRequest object")
            self.assertEqual(built.encode(), headerBytes, f"{name}: connectRequest(...).encode()")
        elif name.startswith("client_bind_"):
            self.assertEqual(request.command, Command.BIND, f"{name}: command")
            used = fields.get("server_response_used")
            if used is not None:
                response = decodeResponse(bytes.fromhex(used))
                self.assertEqual(response.status, Status.OK, f"{name}: server_response_used status")
                self.assertEqual(
                    response.addr.address,  # type: ignore[union-attr]
                    fields["listener_addr"],
                    f"{name}: server_response_used Addr",
                )

    def _expectedDescription(self, fields: dict) -> dict:
        """
        What L{fieldsFromFeature} must say for a vector feature: the vector's
        own fields, plus the keys index.json leaves out (C{network_name} is
        only sometimes given) taken from the spec's tables.
        """
        expected = normalizeFields(fields)
        if expected["kind"] == "network" and "network_name" not in expected:
            expected["network_name"] = {0: "tcp", 1: "udp", 2: "ip", 0x10: "unix", 0x11: "serial"}.get(
                expected["network"], "tcp"
            )
        return expected

    def checkResponseCase(self, name: str, c: dict, data: bytes) -> None:
        fields = c.get("fields")
        self.assertIsNotNone(fields, f"{name}: response case without fields")
        assert fields is not None
        parser = ResponseParser()
        response = parser.feed(data)
        self.assertIsNotNone(response, f"{name}: parser wants more than the recorded bytes")
        assert response is not None
        self.assertEqual(parser.remainder, b"", f"{name}: bytes after the response")
        self.assertEqual(response.version, fields.get("version", 1), f"{name}: version")
        self.assertEqual(response.status, fields["status"], f"{name}: status")
        featureFields = fields.get("features", [])
        self.assertEqual(
            [fieldsFromFeature(f) for f in response.features],
            [self._expectedDescription(f) for f in featureFields],
            f"{name}: decoded features",
        )
        features = tuple(featureFromFields(f) for f in featureFields)
        expected = Response(fields["status"], features, fields.get("version", 1))  # type: ignore[arg-type]
        self.assertEqual(response, expected, f"{name}: decoded response object")
        self.assertEqual(expected.encode(), data, f"{name}: encoding the recorded fields")
        self.assertEqual(encodeResponse(fields["status"], *features), data, f"{name}: encodeResponse")  # type: ignore[arg-type]
        self.assertEqual(decodeResponse(data), expected, f"{name}: decodeResponse")
        if "status_text" in fields:
            self.assertEqual(STATUS_TEXT[Status(fields["status"])], fields["status_text"], f"{name}: STATUS_TEXT")
            self.assertEqual(
                statusText(fields["status"]), fields["status_text"] or "OK", f"{name}: statusText"
            )
        if featureFields:
            first = next(f for f in featureFields if f["kind"] == "addr")
            self.assertEqual(
                response.addr, AddrFeature(first["host"], first["port"], first["atype"]), f"{name}: Response.addr"
            )


def _loadRelayCaseNames() -> tuple[list[str], BaseException | None]:
    try:
        return [c["name"] for c in vectors.casesWithPrefix(*RELAY_CASE_PREFIXES)], None
    except Exception as e:  # reported by a failing test, never a skip
        return [], e


_RELAY_CASE_NAMES, _VECTORS_ERROR = _loadRelayCaseNames()


class GoldenVectorTests(_VectorChecks, SynchronousTestCase):
    """
    Every relay-header case of the golden vectors, one generated test
    method per case (C{test_vector_<case name>}).  The vectors are bytes a
    real GOST put on the wire, so agreeing with them is agreeing with GOST.
    """

    def test_vectorsFound(self) -> None:
        """
        The vectors are found and hold the cases this module relies on; a
        missing or truncated vector set fails here instead of silently
        generating no tests.
        """
        if _VECTORS_ERROR is not None:
            self.fail(f"golden vectors could not be loaded when the module was imported: {_VECTORS_ERROR}")
        names = vectors.caseNames()
        for required in REQUIRED_CASES:
            self.assertIn(required, names)
            self.assertIn(required, _RELAY_CASE_NAMES)
        for prefix in ("codec_", "client_connect_tcp_", "client_bind_tcp_", "server_resp_", "client_connect_udp_"):
            self.assertTrue(
                [n for n in _RELAY_CASE_NAMES if n.startswith(prefix)], f"no {prefix}* vector case"
            )

    def test_vectorsInsideTheRepository(self) -> None:
        """
        The vectors are read from C{tests/data/vectors} in the repository,
        and a missing directory is an error rather than an empty vector set.
        """
        directory = vectors.vectorsDir()
        self.assertEqual(directory.parent().basename(), "data")
        self.assertEqual(directory.parent().parent().basename(), "tests")
        self.assertEqual(vectors.loadIndex()["cases"][0]["name"], vectors.caseNames()[0])
        missing = self.mktemp()
        self.patch(vectors, "VECTORS_DIRECTORY", missing)
        self.assertRaises(vectors.VectorsMissing, vectors.vectorsDir)
        self.assertRaises(vectors.VectorsMissing, vectors.loadIndex)
        self.assertRaises(vectors.VectorsMissing, vectors.case, "codec_resp_ok")

    def test_unknownCaseName(self) -> None:
        """
        Asking for a case that does not exist is an error, not C{None}.
        """
        self.assertRaises(vectors.VectorsMissing, vectors.case, "no_such_case")

    def test_codecRequestConnectIPv4NoAuth(self) -> None:
        """
        codec_req_connect_ipv4_noauth has no decoded fields in index.json;
        its description says CONNECT 192.168.1.1:8080 with only an Addr, which
        is what connectRequest must produce.
        """
        data = vectors.caseBytes("codec_req_connect_ipv4_noauth")
        request = decodeRequest(data)
        self.assertEqual(request, Request(1, (AddrFeature("192.168.1.1", 8080, ATYP_IPV4),)))
        self.assertEqual(request.addr.address, "192.168.1.1:8080")  # type: ignore[union-attr]
        self.assertIsNone(request.userAuth)
        self.assertEqual(request.network, "tcp")
        self.assertEqual(connectRequest("192.168.1.1:8080").encode(), data)

    def test_unknownFeatureVector(self) -> None:
        """
        codec_req_unknown_feature: the type-9 feature is kept opaque and the
        Addr after it is still found (current GOST behaviour, spec 1.4.5).
        """
        request = decodeRequest(vectors.caseBytes("codec_req_unknown_feature"))
        self.assertEqual(request.features[0], OpaqueFeature(9, b"\x01\x02\x03"))
        self.assertEqual(request.features[0].type, 9)
        self.assertEqual(request.addr, AddrFeature("127.0.0.1", 8080, ATYP_IPV4))

    def test_serverConnectPayloadAfterOK(self) -> None:
        """
        server_connect_* record the OK header glued to the first target data;
        the response parser must stop after the 4-byte OK and hand the rest
        back untouched (spec 1.6: leftover bytes must not be discarded).
        """
        names = [c["name"] for c in vectors.casesWithPrefix("server_connect_")]
        self.assertEqual(len(names), 4)
        for name in names:
            data = vectors.caseBytes(name)
            parser = ResponseParser()
            response = parser.feed(data)
            self.assertEqual(response, Response(Status.OK), name)
            payload = b"hello" if "_tcp_" in name else b"\x00\x05hello"
            self.assertEqual(parser.remainder, payload, name)

    def test_badVersionVector(self) -> None:
        """
        server_bad_version_reply: the request GOST answered with silence has
        VER 2; our decoder must reject it.
        """
        c = vectors.case("server_bad_version_reply")
        self.assertEqual(vectors.caseBytes("server_bad_version_reply"), b"")
        sent = bytes.fromhex(c["fields"]["request_sent"])
        self.assertRaises(RelayDecodeError, RequestParser().feed, sent)
        self.assertRaises(RelayDecodeError, decodeRequest, sent)


def _makeVectorTest(name: str):  # type: ignore[no-untyped-def]
    def test(self: GoldenVectorTests) -> None:
        self.checkCase(name)

    test.__name__ = f"test_vector_{name}"
    test.__doc__ = f"Golden vector {name}: decode gives the recorded fields, the fields encode to the recorded bytes."
    return test


for _name in _RELAY_CASE_NAMES:
    setattr(GoldenVectorTests, f"test_vector_{_name}", _makeVectorTest(_name))


class TranscriptTests(SynchronousTestCase):
    """
    The relay headers of the whole-session transcripts (real GOST client
    against real GOST server) decode to what transcripts/index.json says.
    """

    def test_transcriptHeaders(self) -> None:
        """
        For each transcript: request and response decode to the recorded
        fields, every feature's data re-encodes to its recorded hex, and the
        c2s/s2c streams parse with the rest left as remainder.
        """
        entries = vectors.transcripts()
        self.assertGreaterEqual(len(entries), 7)
        for entry in entries:
            label = entry["file"]
            decoded = entry["decoded"]
            for kind, decode in (("request", decodeRequest), ("response", decodeResponse)):
                recorded = decoded[kind]
                data = bytes.fromhex(recorded["hex"])
                message = decode(data)
                self.assertEqual(message.version, recorded["version"], f"{label} {kind}")
                if kind == "request":
                    self.assertEqual(message.cmd, commandByte(recorded["cmd"]), f"{label} cmd")
                else:
                    self.assertEqual(message.status, recorded["status"], f"{label} status")
                self.assertEqual(len(message.features), len(recorded["features"]), f"{label} {kind}")
                for feature, fields in zip(message.features, recorded["features"]):
                    self.assertEqual(feature, featureFromFields(fields), f"{label} {kind} feature")
                    self.assertEqual(int(feature.type), fields["type"], f"{label} {kind} feature type")
                    self.assertEqual(feature.encodeData().hex(), fields["hex"], f"{label} {kind} feature data")
                self.assertEqual(message.encode(), data, f"{label} {kind} re-encoded")

            session = vectors.transcript(label)
            c2s, s2c = bytes.fromhex(session["c2s"]), bytes.fromhex(session["s2c"])
            requestBytes = bytes.fromhex(decoded["request"]["hex"])
            responseBytes = bytes.fromhex(decoded["response"]["hex"])
            parser = RequestParser()
            self.assertEqual(parser.feed(c2s), decodeRequest(requestBytes), f"{label} c2s")
            self.assertEqual(parser.remainder, c2s[len(requestBytes) :], f"{label} c2s remainder")
            parser = ResponseParser()
            self.assertEqual(parser.feed(s2c), decodeResponse(responseBytes), f"{label} s2c")
            self.assertEqual(parser.remainder, s2c[len(responseBytes) :], f"{label} s2c remainder")

    def test_emptyHostBindBug(self) -> None:
        """
        The rtcp_bind_empty_host_BUG request (GOST sending the bind address as
        the domain C{0.0.0.0::28115}, port 0) decodes: a server of ours must
        be able to read it to work around it.
        """
        (entry, _) = vectors.transcripts("rtcp_bind_empty_host_BUG")
        request = decodeRequest(bytes.fromhex(entry["decoded"]["request"]["hex"]))
        self.assertEqual(request.addr, AddrFeature("0.0.0.0::28115", 0, ATYP_DOMAIN))
        self.assertEqual(request.addr.address, "[0.0.0.0::28115]:0")  # type: ignore[union-attr]
        self.assertEqual(request.command, Command.BIND)


# ---------------------------------------------------------------------------
# hypothesis


def _decodedText(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


#: Strings of at most 255 bytes: well-formed text, and arbitrary bytes
#: carried through surrogateescape (GOST treats these fields as bytes).
shortStrings = st.one_of(
    st.text(max_size=63),
    st.binary(max_size=255).map(_decodedText),
    st.text(alphabet="ab", min_size=255, max_size=255),
)

ports = st.integers(min_value=0, max_value=0xFFFF)

userAuthFeatures = st.builds(UserAuthFeature, shortStrings, shortStrings)

addrFeatures = st.one_of(
    st.builds(lambda ip, port: AddrFeature(str(ip), port, ATYP_IPV4), st.ip_addresses(v=4), ports),
    st.builds(lambda ip, port: AddrFeature(str(ip), port, ATYP_IPV6), st.ip_addresses(v=6), ports),
    st.builds(lambda host, port: AddrFeature(host, port, ATYP_DOMAIN), shortStrings, ports),
)

networkFeatures = st.builds(
    NetworkFeature,
    st.one_of(st.sampled_from([int(n) for n in Network]), st.integers(min_value=0, max_value=0xFFFF)),
)

opaqueFeatures = st.builds(
    OpaqueFeature,
    st.integers(min_value=0, max_value=0xFF).filter(lambda t: t not in (1, 2, 3, 4)),
    st.binary(max_size=64),
)

tunnelFeatures = st.builds(TunnelFeature, st.binary(min_size=16, max_size=40))

features = st.one_of(userAuthFeatures, addrFeatures, networkFeatures, opaqueFeatures, tunnelFeatures)

featureLists = st.lists(features, max_size=8).map(tuple)

requests = st.builds(Request, st.integers(min_value=0, max_value=0xFF), featureLists)

responses = st.builds(Response, st.integers(min_value=0, max_value=0xFF), featureLists)


def _rawFeatureBody(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(tlv(t, d) for t, d in items)


#: Feature areas whose TLV framing is right but whose data is arbitrary: the
#: per-feature decoders see short, long and nonsense data.
rawFeatureBodies = st.lists(
    st.tuples(
        st.one_of(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=0xFF)),
        st.one_of(
            st.binary(max_size=24),
            # Plausible Addr data with an arbitrary length byte / ATYP.
            st.tuples(st.integers(0, 6), st.integers(0, 0xFF), st.binary(max_size=20)).map(
                lambda t: bytes([t[0], t[1]]) + t[2]
            ),
        ),
    ),
    max_size=6,
).map(_rawFeatureBody)

#: Inputs that are mostly well-formed headers, with optional damage: random
#: FLEN, truncation, trailing garbage.
garbageMessages = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda version, code, body, flenDelta, cut, tail: (
            struct.pack(">BBH", version, code, max(0, min(0xFFFF, len(body) + flenDelta))) + body
        )[: None if cut is None else cut]
        + tail,
        st.sampled_from([1, 1, 1, 0, 2, 0xFF]),
        st.integers(min_value=0, max_value=0xFF),
        rawFeatureBodies,
        st.sampled_from([0, 0, 0, -1, 1, -3, 5]),
        st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
        st.binary(max_size=8),
    ),
)


def _parseOutcome(parserClass, pieces):  # type: ignore[no-untyped-def]
    """
    Feed pieces and describe the outcome: C{("error",)}, C{("incomplete",)}
    or C{("message", message, rest)}.  Any exception other than
    L{RelayDecodeError} propagates and fails the test.
    """
    try:
        message, rest = feedPieces(parserClass(), pieces)
    except RelayDecodeError:
        return ("error",)
    if message is None:
        return ("incomplete",)
    return ("message", message, rest)


def _splitAt(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted(min(p, len(data)) for p in points)
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


class RoundTripPropertyTests(SynchronousTestCase):
    """
    Hypothesis properties of the codec: whatever the encoder writes the
    decoder reads back, however the bytes are split, and no input makes the
    decoder fail with anything but L{RelayDecodeError}.
    """

    @PROPERTY_SETTINGS
    @given(requests)
    def test_requestRoundTrip(self, request: Request) -> None:
        """
        decode(encode(request)) == request, and the header says how long the
        message is: 4 + FLEN with FLEN the sum of 3 + LEN.
        """
        data = request.encode()
        flen = sum(3 + len(f.encodeData()) for f in request.features)
        self.assertEqual(data[:4], bytes([1, request.cmd]) + struct.pack(">H", flen))
        self.assertEqual(len(data), 4 + flen)
        self.assertEqual(decodeRequest(data), request)
        self.assertEqual(decodeFeatures(encodeFeatures(request.features)), request.features)

    @PROPERTY_SETTINGS
    @given(responses)
    def test_responseRoundTrip(self, response: Response) -> None:
        """
        decode(encode(response)) == response.
        """
        data = response.encode()
        self.assertEqual(data[:2], bytes([1, response.status]))
        self.assertEqual(decodeResponse(data), response)
        self.assertEqual(encodeResponse(response.status, *response.features), data)

    @PROPERTY_SETTINGS
    @given(requests, st.binary(max_size=32), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
    def test_requestAnySplit(self, request: Request, trailing: bytes, points: list[int]) -> None:
        """
        A request followed by payload, fed in arbitrary pieces (empty pieces
        included): the parser returns None until the last byte of the request
        arrives, then the request, and the payload comes back intact.
        """
        encoded = request.encode()
        pieces = _splitAt(encoded + trailing, points)
        parser = RequestParser()
        fed = 0
        for index, piece in enumerate(pieces):
            result = parser.feed(piece)
            fed += len(piece)
            if fed < len(encoded):
                self.assertIsNone(result)
                self.assertFalse(parser.done)
                continue
            self.assertEqual(result, request)
            self.assertTrue(parser.done)
            self.assertEqual(parser.remainder + b"".join(pieces[index + 1 :]), trailing)
            break
        else:
            self.fail("the parser never produced the request")

    @PROPERTY_SETTINGS
    @given(responses, st.binary(max_size=32), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
    def test_responseAnySplit(self, response: Response, trailing: bytes, points: list[int]) -> None:
        """
        The same for responses (the client reads a response glued to the
        first payload when the server has nodelay=false).
        """
        pieces = _splitAt(response.encode() + trailing, points)
        outcome = _parseOutcome(ResponseParser, pieces)
        self.assertEqual(outcome, ("message", response, trailing))

    @PROPERTY_SETTINGS
    @given(garbageMessages, st.lists(st.integers(min_value=0, max_value=100), max_size=5))
    def test_garbageRequests(self, data: bytes, points: list[int]) -> None:
        """
        Arbitrary bytes make RequestParser return None, return a Request, or
        raise RelayDecodeError, nothing else; the outcome does not depend on
        how the bytes are split; what it decodes re-encodes to something that
        decodes to the same request.
        """
        whole = _parseOutcome(RequestParser, [data])
        self.assertEqual(_parseOutcome(RequestParser, _splitAt(data, points)), whole)
        if whole[0] == "message":
            request = whole[1]
            self.assertIsInstance(request, Request)
            self.assertEqual(decodeRequest(request.encode()), request)
            self.assertEqual(decodeRequest(data[: len(data) - len(whole[2])]), request)
        # The one-shot decoder agrees: it accepts exactly the inputs that are
        # one whole message with nothing after it.
        try:
            strict = decodeRequest(data)
        except RelayDecodeError:
            strict = None
        self.assertEqual(strict, whole[1] if whole[0] == "message" and whole[2] == b"" else None)

    @PROPERTY_SETTINGS
    @given(garbageMessages, st.lists(st.integers(min_value=0, max_value=100), max_size=5))
    def test_garbageResponses(self, data: bytes, points: list[int]) -> None:
        """
        The same for ResponseParser and decodeResponse.
        """
        whole = _parseOutcome(ResponseParser, [data])
        self.assertEqual(_parseOutcome(ResponseParser, _splitAt(data, points)), whole)
        if whole[0] == "message":
            response = whole[1]
            self.assertIsInstance(response, Response)
            self.assertEqual(decodeResponse(response.encode()), response)
        try:
            strict = decodeResponse(data)
        except RelayDecodeError:
            strict = None
        self.assertEqual(strict, whole[1] if whole[0] == "message" and whole[2] == b"" else None)

    @PROPERTY_SETTINGS
    @given(rawFeatureBodies)
    def test_garbageFeatures(self, body: bytes) -> None:
        """
        decodeFeatures on arbitrary TLV data raises only RelayDecodeError;
        what it accepts keeps one feature per TLV, in order, with the TLV's
        type.
        """
        try:
            decoded = decodeFeatures(body)
        except RelayDecodeError:
            return
        types = []
        offset = 0
        while offset < len(body):
            ftype, flen = struct.unpack_from(">BH", body, offset)
            types.append(ftype)
            offset += 3 + flen
        self.assertEqual([int(f.type) for f in decoded], types)


# ---------------------------------------------------------------------------
# spec section 1 edge cases


class SpecEdgeCaseTests(SynchronousTestCase):
    """
    The corner cases of spec-relay.md section 1, as literal bytes.
    """

    def test_badVersion(self) -> None:
        """
        VER must be 0x01 (1.1, 1.6); anything else is a decode error, for
        requests and responses, as soon as the 4-byte header is in.
        """
        for version in (0x00, 0x02, 0xFF):
            data = header(0x01, b"", version=version)
            self.assertRaises(RelayDecodeError, RequestParser().feed, data)
            self.assertRaises(RelayDecodeError, ResponseParser().feed, data)
            self.assertRaises(RelayDecodeError, decodeRequest, data)
            self.assertRaises(RelayDecodeError, decodeResponse, data)
        # Even when FLEN promises more, the version is checked first.
        self.assertRaises(RelayDecodeError, RequestParser().feed, b"\x02\x01\x00\x10")

    def test_shortHeader(self) -> None:
        """
        Fewer than 4 + FLEN bytes is not a message yet (the parser waits);
        the one-shot decoders call that truncation.
        """
        parser = RequestParser()
        self.assertIsNone(parser.feed(b"\x01\x01\x00"))
        self.assertIsNone(parser.feed(b"\x05\x02\x00"))
        self.assertEqual(parser.buffered, 6)
        self.assertFalse(parser.done)
        self.assertRaises(RelayDecodeError, decodeRequest, b"\x01\x01\x00")
        self.assertRaises(RelayDecodeError, decodeRequest, b"\x01\x01\x00\x05\x02\x00")
        self.assertRaises(RelayDecodeError, decodeResponse, b"")

    def test_featureRunsPastFLEN(self) -> None:
        """
        A feature whose header or data runs past the FLEN area is an error
        (1.6), even when the bytes are there after FLEN.
        """
        addr = tlv(2, hexBytes("01 7f000001 0050"))
        # FLEN cuts the Addr data short; the rest follows as "payload".
        data = header(1, addr)[:2] + struct.pack(">H", len(addr) - 2) + addr
        self.assertRaises(RelayDecodeError, RequestParser().feed, data)
        # FLEN cuts a feature header.
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, b"\x02\x00"))
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, b"\x02"))
        # LEN bigger than what is left.
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, b"\x09\x00\x05abcd"))
        self.assertRaises(RelayDecodeError, decodeResponse, header(0, b"\x09\x00\x05abcd"))

    def test_zeroLengthKnownFeature(self) -> None:
        """
        Zero-length DATA for a known feature type fails its decoder (1.6);
        for an unknown type it is an empty opaque feature.
        """
        for ftype in (1, 2, 3, 4):
            self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(ftype, b"")))
            self.assertRaises(RelayDecodeError, decodeResponse, header(0, tlv(ftype, b"")))
        self.assertEqual(decodeRequest(header(1, tlv(5, b""))).features, (OpaqueFeature(5, b""),))
        self.assertEqual(decodeRequest(header(1, tlv(0, b""))).features, (OpaqueFeature(0, b""),))

    def test_userAuthLengths(self) -> None:
        """
        UserAuth: ULEN or PLEN running past the data is an error (1.4.1);
        trailing bytes after PASS are ignored.
        """
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(1, b"\x05a")))
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(1, b"\x01a")))
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(1, b"\x01a\x05b")))
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(1, b"\x00")))
        self.assertEqual(
            decodeRequest(header(1, tlv(1, b"\x01a\x01b\xff\xff"))).userAuth, UserAuthFeature("a", "b")
        )
        self.assertEqual(decodeRequest(header(1, tlv(1, b"\x01a\x00"))).userAuth, UserAuthFeature("a", ""))

    def test_emptyUserAuth(self) -> None:
        """
        Empty username and password are legal and encode as C{00 00} (1.4.1).
        """
        self.assertEqual(UserAuthFeature("", "").encodeData(), b"\x00\x00")
        self.assertEqual(decodeRequest(header(1, tlv(1, b"\x00\x00"))).userAuth, UserAuthFeature("", ""))
        self.assertEqual(
            connectRequest("1.2.3.4:80", username="").encode(),
            hexBytes("01 01 00 0f | 01 00 02 00 00 | 02 00 07 01 01 02 03 04 00 50"),
        )

    def test_userAuthTooLong(self) -> None:
        """
        The encoder refuses a username or password over 255 bytes (counted as
        UTF-8 bytes, not characters) and accepts exactly 255.
        """
        for username, password in (("a" * 256, ""), ("", "p" * 256), ("\u00e9" * 128, "")):
            feature = UserAuthFeature(username, password)
            self.assertRaises(RelayEncodeError, feature.encodeData)
            self.assertRaises(RelayEncodeError, Request(1, (feature,)).encode)
            self.assertRaises(RelayEncodeError, connectRequest("a:1", username=username, password=password).encode)
        data = UserAuthFeature("a" * 255, "\u00e9" * 127 + "x").encodeData()
        self.assertEqual(data[0], 255)
        self.assertEqual(data[256], 255)
        self.assertEqual(len(data), 2 + 255 + 255)

    def test_rawBytesUserAuth(self) -> None:
        """
        USER and PASS are raw bytes in GOST; bytes that are not UTF-8 survive
        decode -> encode unchanged.
        """
        data = header(1, tlv(1, b"\x02\xff\xfe\x01\x80"))
        request = decodeRequest(data)
        self.assertEqual(request.encode(), data)

    def test_addrBadType(self) -> None:
        """
        ATYP other than 1, 3, 4 is an error (1.4.2).
        """
        for atype in (0, 2, 5, 0xFF):
            data = header(1, tlv(2, bytes([atype]) + hexBytes("7f000001 0050")))
            self.assertRaises(RelayDecodeError, decodeRequest, data)

    def test_addrLengths(self) -> None:
        """
        Addr DATA must be >= 4 bytes, IPv4 >= 7, IPv6 >= 19, domain >= 4 +
        NLEN; a zero-length domain is legal and trailing bytes are ignored.
        """
        bad = [
            hexBytes("01 7f0000"),
            hexBytes("01 7f000001 00"),
            hexBytes("04") + b"\x00" * 17,
            hexBytes("03 05 616263 0050"),
            hexBytes("03 00 00"),
        ]
        for data in bad:
            self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(2, data)))
        good = [
            (hexBytes("03 00 0035"), AddrFeature("", 53, ATYP_DOMAIN)),
            (hexBytes("01 7f000001 0050 ffff"), AddrFeature("127.0.0.1", 80, ATYP_IPV4)),
            (hexBytes("04") + b"\x00" * 15 + b"\x01" + hexBytes("01bb"), AddrFeature("::1", 443, ATYP_IPV6)),
            (hexBytes("03 03 616263 0050 00"), AddrFeature("abc", 80, ATYP_DOMAIN)),
        ]
        for data, expected in good:
            self.assertEqual(decodeRequest(header(1, tlv(2, data))).addr, expected)

    def test_tunnelAndNetworkLengths(self) -> None:
        """
        Tunnel needs >= 16 bytes (we accept old GOST's 16 and current 20),
        Network >= 2 (extra ignored).
        """
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(3, b"\x00" * 15)))
        for size in (16, 20):
            self.assertEqual(
                decodeRequest(header(1, tlv(3, bytes(range(size))))).features, (TunnelFeature(bytes(range(size))),)
            )
        self.assertRaises(RelayDecodeError, decodeRequest, header(1, tlv(4, b"\x00")))
        self.assertEqual(decodeRequest(header(1, tlv(4, b"\x00\x01\xff"))).network, "udp")

    def test_unknownFeatureKeptOpaque(self) -> None:
        """
        An unknown feature type is kept as an opaque feature, in place, with
        its bytes; the known features around it still count (1.4.5), and it
        encodes back unchanged.
        """
        body = tlv(0xFE, b"xyz") + tlv(1, b"\x01u\x01p") + tlv(0x05, b"") + tlv(2, hexBytes("03 00 0035"))
        data = header(1, body)
        request = decodeRequest(data)
        self.assertEqual(
            request.features,
            (
                OpaqueFeature(0xFE, b"xyz"),
                UserAuthFeature("u", "p"),
                OpaqueFeature(5, b""),
                AddrFeature("", 53, ATYP_DOMAIN),
            ),
        )
        self.assertEqual(request.userAuth, UserAuthFeature("u", "p"))
        self.assertEqual(request.addr, AddrFeature("", 53, ATYP_DOMAIN))
        self.assertEqual(request.encode(), data)

    def test_lastFeatureWins(self) -> None:
        """
        With repeated features the server keeps the last UserAuth, Addr and
        Network (1.4.6).
        """
        body = (
            tlv(1, b"\x01a\x01b")
            + tlv(2, hexBytes("01 01020304 0001"))
            + tlv(4, b"\x00\x01")
            + tlv(1, b"\x01c\x01d")
            + tlv(2, hexBytes("03 01 78 0002"))
            + tlv(4, b"\x00\x00")
        )
        request = decodeRequest(header(1, body))
        self.assertEqual(request.userAuth, UserAuthFeature("c", "d"))
        self.assertEqual(request.addr, AddrFeature("x", 2, ATYP_DOMAIN))
        self.assertEqual(request.network, "tcp")
        request = decodeRequest(header(1, tlv(4, b"\x00\x00") + tlv(4, b"\x00\x10")))
        self.assertEqual(request.network, "unix")
        self.assertIsNone(request.addr)
        self.assertIsNone(request.userAuth)

    def test_responseAddrIsFirst(self) -> None:
        """
        The client reads the first Addr of a response as the peer (1.4.6:
        an optional second one is "host" metadata).
        """
        body = tlv(2, hexBytes("01 cb007105 c738")) + tlv(2, hexBytes("03 01 68 0000"))
        response = decodeResponse(header(0, body))
        self.assertEqual(response.addr, AddrFeature("203.0.113.5", 51000, ATYP_IPV4))
        self.assertIsNone(decodeResponse(header(0, b"")).addr)

    def test_udpFlag(self) -> None:
        """
        The FUDP bit 0x80 makes the network udp whatever a Network feature
        says; it is not part of the command nibble (1.3).
        """
        tcp = tlv(4, b"\x00\x00")
        self.assertEqual(decodeRequest(header(0x81, tcp)).network, "udp")
        self.assertEqual(decodeRequest(header(0x82, b"")).network, "udp")
        self.assertEqual(decodeRequest(header(0x01, tcp)).network, "tcp")
        self.assertEqual(decodeRequest(header(0x01, tlv(4, b"\x00\x01"))).network, "udp")
        self.assertEqual(decodeRequest(header(0x02, b"")).network, "tcp")
        self.assertEqual(FLAG_UDP, 0x80)
        for cmd, command in ((0x81, 1), (0x82, 2), (0x03, 3), (0xF3, 3), (0x70, 0), (0x0F, 0x0F)):
            request = decodeRequest(header(cmd, b""))
            self.assertEqual(request.cmd, cmd)
            self.assertEqual(request.command, command)

    def test_networkValues(self) -> None:
        """
        Network feature values map to names by the 1.4.4 table; anything else
        (0x99, 0x0003) is tcp.
        """
        table = {
            0x0000: "tcp",
            0x0001: "udp",
            0x0002: "ip",
            0x0010: "unix",
            0x0011: "serial",
            0x0099: "tcp",
            0x0003: "tcp",
            0x0100: "tcp",
        }
        for value, name in table.items():
            request = decodeRequest(header(1, tlv(4, struct.pack(">H", value))))
            self.assertEqual(request.network, name, hex(value))
            self.assertEqual(NetworkFeature(value).name, name, hex(value))
            self.assertEqual(NetworkFeature(value).encodeData(), struct.pack(">H", value))

    def test_encoderLimits(self) -> None:
        """
        FLEN and each LEN are limited to 65535 and domains to 255 bytes; the
        encoder refuses more (1.6) instead of writing a wrong length.
        """
        self.assertRaises(RelayEncodeError, Request(1, (OpaqueFeature(9, b"x" * 0x10000),)).encode)
        self.assertRaises(RelayEncodeError, Request(1, (OpaqueFeature(9, b"x" * 30000),) * 3).encode)
        self.assertRaises(RelayEncodeError, Response(0, (OpaqueFeature(9, b"x" * 30000),) * 3).encode)
        self.assertEqual(len(Request(1, (OpaqueFeature(9, b"x" * 0xFFFC),)).encode()), 4 + 0xFFFF)
        self.assertRaises(RelayEncodeError, AddrFeature("a" * 256, 1).encodeData)
        self.assertRaises(RelayEncodeError, AddrFeature("a", 0x10000).encodeData)
        self.assertRaises(RelayEncodeError, AddrFeature("a", -1).encodeData)
        self.assertRaises(RelayEncodeError, AddrFeature("1.2.3.4", 1, 5).encodeData)
        self.assertEqual(len(AddrFeature("a" * 255, 1).encodeData()), 1 + 1 + 255 + 2)

    # KNOWN CODEC BUG: this test fails against the current gostrelay/wire code
    # on purpose (see the docstring); do not skip it, fix the codec.
    def test_addrHostNotMatchingType(self) -> None:
        """
        An Addr whose host is not an address of its ATYP cannot be encoded:
        that is a RelayEncodeError like every other unencodable value.

        KNOWN CODEC BUG (expected to fail until gostrelay/wire fixes it):
        encodeSocksAddress lets ipaddress's ValueError escape instead of
        raising AddressError, so AddrFeature.encodeData does not turn it into
        RelayEncodeError, e.g.
        C{AddrFeature("example.com", 80, ATYP_IPV4).encodeData()} raises
        C{ValueError: 'example.com' does not appear to be an IPv4 or IPv6
        address}.
        """
        mismatched = [("example.com", ATYP_IPV4), ("2001:db8::1", ATYP_IPV4), ("1.2.3.4", ATYP_IPV6), ("", ATYP_IPV6)]
        for host, atype in mismatched:
            self.assertRaises(RelayEncodeError, AddrFeature(host, 80, atype).encodeData)
            self.assertRaises(RelayEncodeError, Request(1, (AddrFeature(host, 80, atype),)).encode)


class ConnectRequestTests(SynchronousTestCase):
    """
    L{connectRequest} builds what GOST's client sends (spec 1.7, 3.1).
    """

    def test_specExamples(self) -> None:
        """
        The CONNECT hex examples of spec 1.7.
        """
        examples = [
            (
                ("example.com:80", "tcp", "u", "p"),
                "01 01 00 19 | 01 00 04 01 75 01 70 | 02 00 0f 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 00 50",
            ),
            (("192.168.1.10:22", "tcp", None, ""), "01 01 00 0a | 02 00 07 01 c0 a8 01 0a 00 16"),
            (
                ("[2001:db8::1]:443", "tcp", None, ""),
                "01 01 00 16 | 02 00 13 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb",
            ),
            (
                ("8.8.8.8:53", "udp", "u", "p"),
                "01 81 00 16 | 04 00 02 00 01 | 01 00 04 01 75 01 70 | 02 00 07 01 08 08 08 08 00 35",
            ),
            ((":53", "udp", None, ""), "01 81 00 0c | 04 00 02 00 01 | 02 00 04 03 00 00 35"),
            ((":0", "tcp", None, ""), "01 01 00 07 | 02 00 04 03 00 00 00"),
        ]
        for (address, network, username, password), expected in examples:
            request = connectRequest(address, network, username, password)
            self.assertEqual(request.encode().hex(), hexBytes(expected).hex(), address)
            self.assertEqual(decodeRequest(hexBytes(expected)), request, address)
            self.assertEqual(request.network, network, address)

    def test_specFirstSegment(self) -> None:
        """
        The nodelay=false first segment of spec 1.7 (header glued to "GET /")
        parses to the example.com request with the HTTP bytes as remainder.
        """
        data = hexBytes(
            "01 01 00 19 01 00 04 01 75 01 70 02 00 0f 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 00 50 47 45 54 20 2f"
        )
        parser = RequestParser()
        self.assertEqual(parser.feed(data), connectRequest("example.com:80", username="u", password="p"))
        self.assertEqual(parser.remainder, b"GET /")
        parser = ResponseParser()
        self.assertEqual(parser.feed(hexBytes("01 00 00 00 48 54 54 50 2f 31 2e 31")), Response(0))
        self.assertEqual(parser.remainder, b"HTTP/1.1")

    def test_featureOrder(self) -> None:
        """
        CONNECT features come as [Network] (udp/unix/serial only), then
        [UserAuth] (only with a username), then [Addr] (only with an address).
        """
        self.assertEqual(connectRequest("", "tcp").features, ())
        self.assertEqual(connectRequest("", "tcp").encode(), hexBytes("01 01 00 00"))
        self.assertEqual(
            connectRequest("h:1", "unix", "u").features,
            (NetworkFeature(Network.UNIX), UserAuthFeature("u", ""), AddrFeature("h", 1, ATYP_DOMAIN)),
        )
        self.assertEqual(connectRequest("h:1", "serial").features[0], NetworkFeature(Network.SERIAL))
        self.assertEqual(connectRequest("h:1", "serial").cmd, 0x01)
        self.assertEqual(connectRequest("h:1", "udp").cmd, 0x81)
        self.assertEqual(connectRequest("h:1", "tcp", None, "ignored").userAuth, None)

    def test_addressForms(self) -> None:
        """
        Address strings become Addr features the way GOST's ParseFrom does
        (1.4.2): IP literals by family, v4-mapped IPv6 as IPv4, no port = 0,
        empty host = empty domain.
        """
        cases = {
            "1.2.3.4:80": AddrFeature("1.2.3.4", 80, ATYP_IPV4),
            "[::ffff:1.2.3.4]:80": AddrFeature("1.2.3.4", 80, ATYP_IPV4),
            "[2001:DB8:0::1]:443": AddrFeature("2001:db8::1", 443, ATYP_IPV6),
            "example.com": AddrFeature("example.com", 0, ATYP_DOMAIN),
            ":53": AddrFeature("", 53, ATYP_DOMAIN),
            "::1": AddrFeature("::1", 0, ATYP_IPV6),
        }
        for address, expected in cases.items():
            self.assertEqual(AddrFeature.fromAddress(address), expected, address)
            self.assertEqual(connectRequest(address).addr, expected, address)
        self.assertEqual(AddrFeature.fromAddress("[::ffff:1.2.3.4]:80").encodeData(), hexBytes("01 01020304 0050"))
        self.assertEqual(AddrFeature("2001:db8::1", 443, ATYP_IPV6).address, "[2001:db8::1]:443")
        self.assertEqual(AddrFeature("", 53).address, ":53")
        self.assertEqual(AddrFeature("1.2.3.4", 80, ATYP_IPV4).address, "1.2.3.4:80")

    def test_bindAndResponseExamples(self) -> None:
        """
        The BIND and response hex examples of spec 1.7 decode to what they
        describe and encode back to the same bytes.
        """
        any4 = AddrFeature("0.0.0.0", 2222, ATYP_IPV4)
        requests = [
            (Request(0x02, (NetworkFeature(0), any4)), "01 02 00 0f | 04 00 02 00 00 | 02 00 07 01 00 00 00 00 08 ae"),
            (
                Request(0x02, (UserAuthFeature("u", "p"), NetworkFeature(0), any4)),
                "01 02 00 16 | 01 00 04 01 75 01 70 | 04 00 02 00 00 | 02 00 07 01 00 00 00 00 08 ae",
            ),
            (
                Request(0x82, (NetworkFeature(1), AddrFeature("0.0.0.0", 10053, ATYP_IPV4))),
                "01 82 00 0f | 04 00 02 00 01 | 02 00 07 01 00 00 00 00 27 45",
            ),
            (
                Request(0x82, (NetworkFeature(1), AddrFeature("0.0.0.0", 0, ATYP_IPV4))),
                "01 82 00 0f | 04 00 02 00 01 | 02 00 07 01 00 00 00 00 00 00",
            ),
        ]
        for request, text in requests:
            self.assertEqual(request.encode(), hexBytes(text), text)
            self.assertEqual(decodeRequest(hexBytes(text)), request, text)
        responses = [
            (Response(Status.OK), "01 00 00 00"),
            (Response(Status.UNAUTHORIZED), "01 02 00 00"),
            (Response(Status.FORBIDDEN), "01 03 00 00"),
            (Response(Status.NETWORK_UNREACHABLE), "01 07 00 00"),
            (Response(Status.OK, (any4,)), "01 00 00 0a | 02 00 07 01 00 00 00 00 08 ae"),
            (Response(Status.OK, (AddrFeature("::", 2222, ATYP_IPV6),)), "01 00 00 16 | 02 00 13 04" + " 00" * 16 + " 08 ae"),
            (
                Response(Status.OK, (AddrFeature("203.0.113.5", 51000, ATYP_IPV4),)),
                "01 00 00 0a | 02 00 07 01 cb 00 71 05 c7 38",
            ),
        ]
        for response, text in responses:
            self.assertEqual(response.encode(), hexBytes(text), text)
            self.assertEqual(encodeResponse(response.status, *response.features), hexBytes(text), text)
            self.assertEqual(decodeResponse(hexBytes(text)), response, text)


class StatusTests(SynchronousTestCase):
    """
    Status codes and the texts GOST's client prints for them (1.5).
    """

    def test_statusValues(self) -> None:
        """
        The status enumeration has the wire values of the 1.5 table.
        """
        self.assertEqual(
            [(s.name, int(s)) for s in Status],
            [
                ("OK", 0),
                ("BAD_REQUEST", 1),
                ("UNAUTHORIZED", 2),
                ("FORBIDDEN", 3),
                ("TIMEOUT", 4),
                ("SERVICE_UNAVAILABLE", 5),
                ("HOST_UNREACHABLE", 6),
                ("NETWORK_UNREACHABLE", 7),
                ("INTERNAL_SERVER_ERROR", 8),
            ],
        )
        self.assertEqual([int(c) for c in Command], [1, 2, 3])
        self.assertEqual([int(t) for t in FeatureType], [1, 2, 3, 4])

    def test_statusText(self) -> None:
        """
        statusText gives GOST's texts; OK is "OK" and unknown codes say
        their number.
        """
        texts = {
            0: "OK",
            1: "Bad Request",
            2: "Unauthorized",
            3: "Forbidden",
            4: "Timeout",
            5: "Service Unavailable",
            6: "Host Unreachable",
            7: "Network Unreachable",
            8: "Internal Server Error",
            9: "status 0x09",
            0xAB: "status 0xab",
        }
        for status, text in texts.items():
            self.assertEqual(statusText(status), text)
