"""
Tests for L{gostrelay.wire.smux}: xtaci/smux frames, versions 1 and 2
(spec-relay.md section 4).

  - L{GoldenVectorTests}: every C{smux_v1_*} / C{smux_v2_*} case recorded
    from real GOST (xtaci/smux v1.5.31) decodes to the frames listed in
    L{EXPECTED} (some C{.bin} files hold several frames: the v2 PSH reply
    and the v2 FIN are preceded by a window update) and re-encodes to the
    same bytes; the smux frames of the rtcp transcript too.
  - L{SpecExampleTests}: the literal frames of spec 4.5.
  - L{ErrorTests}: what kills a session (SmuxError).
  - L{PropertyTests} (hypothesis): any split of a stream of frames parses
    the same; encode/decode round trips.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire import smux
from gostrelay.wire.relay import AddrFeature, decodeResponse
from gostrelay.wire.smux import (
    FIN,
    HEADER_SIZE,
    NOP,
    PSH,
    SYN,
    UPD,
    Frame,
    FrameParser,
    SmuxError,
    decodeUpdate,
    encodeFrame,
    encodeUpdate,
)
from tests import vectors

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

PEER_RESPONSE = bytes.fromhex("0100000a020007017f000001d431")

#: What each smux vector holds, frame by frame: (cmd, sid, data).  A UPD's
#: data is given as (consumed, window).  Every smux_* case of index.json
#: must be listed here (L{GoldenVectorTests.test_everyCaseListed}).
EXPECTED: dict[str, list[tuple[int, int, object]]] = {
    "smux_v1_syn_open_stream": [(SYN, 3, b"")],
    "smux_v1_psh_peer_response": [(PSH, 3, PEER_RESPONSE)],
    "smux_v1_psh_data_hello": [(PSH, 3, b"hello")],
    "smux_v1_psh_data_world_reply": [(PSH, 3, b"world")],
    "smux_v1_fin_close_stream": [(FIN, 3, b"")],
    "smux_v1_fin_close_stream_peer": [(FIN, 3, b"")],
    "smux_v2_syn_open_stream": [(SYN, 3, b"")],
    "smux_v2_psh_peer_response": [(PSH, 3, PEER_RESPONSE)],
    "smux_v2_psh_data_hello": [(PSH, 3, b"hello")],
    # The relay client consumed the 14-byte per-peer response: UPD(14,
    # 65536) goes before its reply.
    "smux_v2_psh_data_world_reply": [(UPD, 3, (14, 65536)), (PSH, 3, b"world")],
    # The relay server consumed 'world' (5 bytes): UPD(5, 65536), then FIN.
    "smux_v2_fin_close_stream": [(UPD, 3, (5, 65536)), (FIN, 3, b"")],
    "smux_v2_fin_close_stream_peer": [(FIN, 3, b"")],
}


def smuxCases() -> list[dict]:
    return vectors.casesWithPrefix("smux_v1_", "smux_v2_")


def encodeExpected(version: int, expected: list[tuple[int, int, object]]) -> bytes:
    out = b""
    for cmd, sid, data in expected:
        if cmd == UPD:
            consumed, window = data  # type: ignore[misc]
            out += encodeUpdate(version, sid, consumed, window)
        else:
            out += encodeFrame(version, cmd, sid, data)  # type: ignore[arg-type]
    return out


def header(version: int, cmd: int, length: int, sid: int) -> bytes:
    return struct.pack("<BBHI", version, cmd, length, sid)


class GoldenVectorTests(SynchronousTestCase):
    def test_everyCaseListed(self) -> None:
        """
        The vectors hold exactly the smux cases this module knows (a new
        case fails here until its frames are written down).
        """
        names = {c["name"] for c in smuxCases()}
        self.assertEqual(names, set(EXPECTED))

    def test_decode(self) -> None:
        """
        Each case, fed whole to a parser of its version, gives exactly the
        expected frames and leaves nothing buffered; .bin and hex agree.
        """
        for c in smuxCases():
            name = c["name"]
            version = c["fields"]["smux_version"]
            raw = vectors.caseBytes(name)
            self.assertEqual(raw, vectors.caseFileBytes(name), name)
            parser = FrameParser(version)
            frames = parser.feed(raw)
            got = []
            for f in frames:
                self.assertEqual(f.version, version, name)
                got.append((f.cmd, f.sid, decodeUpdate(f.data) if f.cmd == UPD else f.data))
            self.assertEqual(got, EXPECTED[name], name)
            self.assertEqual(parser.buffered, 0, name)

    def test_encode(self) -> None:
        """
        The expected frames encode (encodeFrame, encodeUpdate and
        Frame.encode) to the recorded bytes.
        """
        for c in smuxCases():
            name = c["name"]
            version = c["fields"]["smux_version"]
            raw = vectors.caseBytes(name)
            self.assertEqual(encodeExpected(version, EXPECTED[name]), raw, name)
            frames = FrameParser(version).feed(raw)
            self.assertEqual(b"".join(f.encode() for f in frames), raw, name)

    def test_peerResponsePayload(self) -> None:
        """
        The PSH of the per-peer response carries the relay response of
        fields.payload: OK, Addr 127.0.0.1:54321.
        """
        for name in ("smux_v1_psh_peer_response", "smux_v2_psh_peer_response"):
            c = vectors.case(name)
            (frame,) = FrameParser(c["fields"]["smux_version"]).feed(vectors.caseBytes(name))
            self.assertEqual(frame.data, bytes.fromhex(c["fields"]["payload"]))
            response = decodeResponse(frame.data)
            self.assertEqual(response.status, 0)
            self.assertEqual(response.addr, AddrFeature("127.0.0.1", 54321, 1))

    def test_writesAreWholeFrames(self) -> None:
        """
        Where a case records its writes, each write is whole frames.
        """
        for c in smuxCases():
            version = c["fields"]["smux_version"]
            for w in c.get("writes", []):
                parser = FrameParser(version)
                self.assertTrue(parser.feed(bytes.fromhex(w)))
                self.assertEqual(parser.buffered, 0)

    def test_rtcpTranscriptFrames(self) -> None:
        """
        The smux frames of the rtcp transcript (after the 14-byte BIND
        reply, and after the request on the client side) decode to the
        frames transcripts/index.json lists, and re-encode identically.
        """
        (entry,) = vectors.transcripts("rtcp_bind")
        decoded = entry["decoded"]
        t = vectors.transcript(entry["file"])
        s2c = bytes.fromhex(t["s2c"])[len(bytes.fromhex(decoded["response"]["hex"])) :]
        c2s = bytes.fromhex(t["c2s"])[len(bytes.fromhex(decoded["request"]["hex"])) :]
        for stream, listed in ((s2c, decoded["s2c_smux"]), (c2s, decoded["c2s_smux"])):
            frames = FrameParser(1).feed(stream)
            self.assertEqual(
                [(smux.COMMAND_NAMES[f.cmd], f.sid, f.data.hex()) for f in frames],
                [(x["cmd"], x["sid"], x["data_hex"]) for x in listed],
            )
            self.assertEqual([f.encode().hex() for f in frames], [x["frame_hex"] for x in listed])


class SpecExampleTests(SynchronousTestCase):
    """
    The frames of spec-relay.md 4.5, byte for byte.
    """

    def test_syn(self) -> None:
        raw = vectors.hexBytes("01 00 00 00 03 00 00 00")
        self.assertEqual(encodeFrame(1, SYN, 3), raw)
        self.assertEqual(FrameParser(1).feed(raw), [Frame(1, SYN, 3, b"")])

    def test_pshPerPeerReply(self) -> None:
        raw = vectors.hexBytes(
            "01 02 0e 00 03 00 00 00 | 01 00 00 0a 02 00 07 01 cb 00 71 05 c7 38"
        )
        payload = raw[HEADER_SIZE:]
        self.assertEqual(encodeFrame(1, PSH, 3, payload), raw)
        (frame,) = FrameParser(1).feed(raw)
        self.assertEqual((frame.cmd, frame.sid), (PSH, 3))
        self.assertEqual(decodeResponse(frame.data).addr, AddrFeature("203.0.113.5", 51000, 1))

    def test_nop(self) -> None:
        raw = vectors.hexBytes("01 03 00 00 00 00 00 00")
        self.assertEqual(encodeFrame(1, NOP, 0), raw)
        self.assertEqual(FrameParser(1).feed(raw), [Frame(1, NOP, 0, b"")])

    def test_fin(self) -> None:
        raw = vectors.hexBytes("01 01 00 00 03 00 00 00")
        self.assertEqual(encodeFrame(1, FIN, 3), raw)
        self.assertEqual(FrameParser(1).feed(raw), [Frame(1, FIN, 3, b"")])

    def test_upd(self) -> None:
        raw = vectors.hexBytes("02 04 08 00 03 00 00 00 0e 00 00 00 00 00 01 00")
        self.assertEqual(encodeUpdate(2, 3, 14, 65536), raw)
        (frame,) = FrameParser(2).feed(raw)
        self.assertEqual((frame.cmd, frame.sid), (UPD, 3))
        self.assertEqual(decodeUpdate(frame.data), (14, 65536))

    def test_littleEndian(self) -> None:
        """
        LEN and SID are little-endian: a 0x0102-byte PSH on sid 0x01020304.
        """
        raw = encodeFrame(1, PSH, 0x01020304, b"x" * 0x0102)
        self.assertEqual(raw[:HEADER_SIZE], bytes.fromhex("010202010403" "0201"))

    def test_updateWraps(self) -> None:
        """
        UPD counters are uint32 (smux's modular arithmetic).
        """
        raw = encodeUpdate(2, 5, 2**32 + 7, 65536)
        self.assertEqual(decodeUpdate(raw[HEADER_SIZE:]), (7, 65536))

    def test_emptyPSHParses(self) -> None:
        """
        A PSH with LEN 0 is a valid frame (the session ignores it).
        """
        self.assertEqual(FrameParser(1).feed(header(1, PSH, 0, 3)), [Frame(1, PSH, 3, b"")])


class ErrorTests(SynchronousTestCase):
    """
    Frames that kill the session raise L{SmuxError}, as soon as their
    header has arrived.
    """

    def assertHeaderFails(self, version: int, raw: bytes) -> None:
        self.assertRaises(SmuxError, FrameParser(version).feed, raw)
        # Already from the header alone.
        self.assertRaises(SmuxError, FrameParser(version).feed, raw[:HEADER_SIZE])

    def test_versionMismatch(self) -> None:
        self.assertHeaderFails(1, encodeFrame(2, SYN, 3))
        self.assertHeaderFails(2, encodeFrame(1, PSH, 3, b"hello"))
        self.assertHeaderFails(1, vectors.caseBytes("smux_v2_psh_data_hello"))
        self.assertHeaderFails(2, vectors.caseBytes("smux_v1_psh_data_hello"))

    def test_mismatchAfterGoodFrames(self) -> None:
        """
        A bad frame after good ones in the same chunk still raises.
        """
        parser = FrameParser(1)
        self.assertRaises(SmuxError, parser.feed, encodeFrame(1, SYN, 3) + encodeFrame(2, SYN, 5))

    def test_unknownCommand(self) -> None:
        for cmd in (5, 6, 0x7F, 0xFF):
            for version in (1, 2):
                self.assertHeaderFails(version, header(version, cmd, 0, 3))

    def test_updInVersion1(self) -> None:
        self.assertHeaderFails(1, encodeUpdate(1, 3, 14, 65536))

    def test_nopWithData(self) -> None:
        for version in (1, 2):
            self.assertHeaderFails(version, header(version, NOP, 4, 0) + b"junk")

    def test_updWrongLength(self) -> None:
        for length in (0, 4, 7, 9, 16):
            self.assertHeaderFails(2, header(2, UPD, length, 3) + b"\0" * length)

    def test_decodeUpdateLength(self) -> None:
        for data in (b"", b"\0" * 7, b"\0" * 9):
            self.assertRaises(SmuxError, decodeUpdate, data)

    def test_encodeTooLarge(self) -> None:
        self.assertRaises(SmuxError, encodeFrame, 1, PSH, 3, b"x" * 65536)
        self.assertEqual(len(encodeFrame(1, PSH, 3, b"x" * 65535)), HEADER_SIZE + 65535)

    def test_isValueError(self) -> None:
        self.assertTrue(issubclass(SmuxError, ValueError))


# -- hypothesis


def frames(version: int) -> st.SearchStrategy[list[Frame]]:
    cmds = [SYN, FIN, PSH, NOP] + ([UPD] if version >= 2 else [])
    sids = st.integers(min_value=0, max_value=2**32 - 1)

    def build(cmd: int) -> st.SearchStrategy[Frame]:
        if cmd == NOP:
            return st.just(Frame(version, NOP, 0, b""))
        if cmd == UPD:
            return st.builds(
                lambda sid, c, w: Frame(version, UPD, sid, struct.pack("<II", c, w)),
                sids,
                st.integers(min_value=0, max_value=2**32 - 1),
                st.integers(min_value=0, max_value=2**32 - 1),
            )
        if cmd == PSH:
            return st.builds(lambda sid, data: Frame(version, PSH, sid, data), sids, st.binary(max_size=300))
        return st.builds(lambda sid: Frame(version, cmd, sid, b""), sids)

    return st.lists(st.sampled_from(cmds).flatmap(build), max_size=20)


versionedFrames = st.sampled_from([1, 2]).flatmap(lambda v: st.tuples(st.just(v), frames(v)))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


class PropertyTests(SynchronousTestCase):
    @PROPERTY_SETTINGS
    @given(versionedFrames, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
    def test_anySplitParsesTheSame(self, vf: tuple[int, list[Frame]], cuts: list[int]) -> None:
        """
        A stream of frames fed in arbitrary pieces (empty ones included)
        gives the same frames as fed whole, and they are the frames encoded.
        """
        version, fs = vf
        stream = b"".join(f.encode() for f in fs)
        whole = FrameParser(version).feed(stream)
        self.assertEqual(whole, fs)
        parser = FrameParser(version)
        got: list[Frame] = []
        for piece in split(stream, cuts):
            got.extend(parser.feed(piece))
        self.assertEqual(got, fs)
        self.assertEqual(parser.buffered, 0)

    @PROPERTY_SETTINGS
    @given(versionedFrames)
    def test_byteByByte(self, vf: tuple[int, list[Frame]]) -> None:
        version, fs = vf
        stream = b"".join(f.encode() for f in fs)
        parser = FrameParser(version)
        got: list[Frame] = []
        for i in range(len(stream)):
            got.extend(parser.feed(stream[i : i + 1]))
        self.assertEqual(got, fs)

    @PROPERTY_SETTINGS
    @given(
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=0, max_value=2**32 - 1),
    )
    def test_updateRoundTrip(self, sid: int, consumed: int, window: int) -> None:
        raw = encodeUpdate(2, sid, consumed, window)
        (frame,) = FrameParser(2).feed(raw)
        self.assertEqual((frame.sid, decodeUpdate(frame.data)), (sid, (consumed, window)))

    @PROPERTY_SETTINGS
    @given(st.sampled_from([1, 2]), st.binary(max_size=200))
    def test_garbageRaisesOnlySmuxError(self, version: int, data: bytes) -> None:
        """
        Arbitrary bytes give frames, wait for more, or raise SmuxError;
        nothing else.
        """
        try:
            FrameParser(version).feed(data)
        except SmuxError:
            pass
