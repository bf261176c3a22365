"""
The KCP codecs against real GOST: the worked example of spec-transports.md
4.9 and every datagram captured between a GOST client and a GOST server
(C{tests/data/vectors/kcp/}, decoded layer by layer in its C{index.json}).

  - L{WorkedExampleTests}: the client's first datagram and the server's ACK,
    decoded layer by layer and re-encoded byte for byte.
  - L{CaptureTests}: for the six sessions (default, crypt_none, nofec,
    nocomp, plain, key_secrect) every datagram decrypts with the session's
    key to the recorded nonce/CRC/plaintext and re-encrypts to the captured
    bytes with that nonce, fails the checksum with the other keys, has the
    recorded FEC header and KCP bytes; parity recomputes; the KCP stream is
    the recorded snappy stream, which decodes to the recorded smux frames
    and relay messages.
  - L{EvidenceTests}: the two longer recordings (ping-pong, 96 KiB random,
    64 KiB compressible): all FEC groups recompute (44 per capture), the
    snappy streams (compressed chunks included) and smux frames decode as
    the evidence files say.

KCP segments are only split here (24-byte headers) to rebuild streams; the
ARQ is tested elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter, defaultdict
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire import smux
from gostrelay.wire.kcp.crypt import (
    ChecksumError,
    decryptPacket,
    deriveKey,
    encryptPacket,
    newBlockCrypt,
)
from gostrelay.wire.kcp.fec import (
    DATA_HEADER_SIZE,
    FLAG_DATA,
    FLAG_PARITY,
    FECDecoder,
    FECEncoder,
    isFEC,
    parseFECPacket,
)
from gostrelay.wire.kcp.snappyframe import STREAM_IDENTIFIER, SnappyFrameDecoder, maskedCRC32C
from gostrelay.wire.relay import RequestParser, ResponseParser
from tests import vectors
from tests.vectors import hexBytes

SESSIONS = ["default", "crypt_none", "nofec", "nocomp", "plain", "key_secrect"]

#: The "trials" of index.json: crypt and passphrase per label.
TRIALS = {
    "aes:''": ("aes", ""),
    'aes:"it\'s a secrect"': ("aes", "it's a secrect"),
    "none": ("none", ""),
}

SEGMENT_HEADER = struct.Struct("<IBBHIIII")
PUSH = 81
SMUX_COMMANDS = {0: "SYN", 1: "FIN", 2: "PSH", 3: "NOP", 4: "UPD"}
CHUNK_TYPES = {0x00: "compressed", 0x01: "uncompressed", 0xFF: "stream_identifier"}


def _sessions() -> dict[str, dict]:
    return {s["name"]: s for s in vectors.loadKCPIndex()["sessions"]}


def _sessionCrypt(session: dict) -> tuple[str, str]:
    crypto = session["crypto"]
    return crypto["crypt"], crypto.get("passphrase") or ""


def _segments(kcp: bytes) -> Iterator[tuple[int, int, bytes]]:
    """
    (cmd, sn, data) of each KCP segment in a datagram.
    """
    offset = 0
    while len(kcp) - offset >= SEGMENT_HEADER.size:
        _, cmd, _, _, _, sn, _, length = SEGMENT_HEADER.unpack_from(kcp, offset)
        offset += SEGMENT_HEADER.size
        yield cmd, sn, kcp[offset : offset + length]
        offset += length


def _pushStream(kcpPackets: list[bytes]) -> list[bytes]:
    """
    The PUSH payloads of one direction in sn order, retransmissions dropped.
    """
    bySn: dict[int, bytes] = {}
    for kcp in kcpPackets:
        for cmd, sn, data in _segments(kcp):
            if cmd == PUSH:
                bySn.setdefault(sn, data)
    self_check = sorted(bySn)
    assert self_check == list(range(len(self_check))), "sn gap in a capture"
    return [bySn[sn] for sn in self_check]


def _chunkList(stream: bytes) -> list[tuple[str, bytes]]:
    out, offset = [], 0
    while offset < len(stream):
        length = int.from_bytes(stream[offset + 1 : offset + 4], "little")
        out.append(
            (CHUNK_TYPES.get(stream[offset], hex(stream[offset])), stream[offset + 4 : offset + 4 + length])
        )
        offset += 4 + length
    return out


def _groupsBySeqid(payloads: list[bytes]) -> dict[int, dict[int, bytes]]:
    groups: dict[int, dict[int, bytes]] = defaultdict(dict)
    for payload in payloads:
        if isFEC(payload):
            packet = parseFECPacket(payload)
            groups[packet.seqid // 13][packet.seqid % 13] = payload
    return groups


def _recomputeGroups(testCase: SynchronousTestCase, payloads: list[bytes]) -> list[int]:
    """
    Recompute the parity of every complete 10+3 group and compare it with
    the captured parity packets; return the first seqids of those groups.
    """
    checked = []
    for group, shards in sorted(_groupsBySeqid(payloads).items()):
        if len(shards) != 13:
            continue
        encoder = FECEncoder(10, 3)
        encoder.nextSeqid = group * 13
        produced: list[bytes] = []
        for position in range(10):
            produced += encoder.encode(shards[position][DATA_HEADER_SIZE:])
        testCase.assertEqual(produced, [shards[i] for i in range(13)], f"group at seqid {group * 13}")
        checked.append(group * 13)
    return checked


class WorkedExampleTests(SynchronousTestCase):
    """
    Spec 4.9: key "", AES-256, FEC 10/3, snappy, smux v1, conv 0x12345678.
    """

    CLIENT_CIPHERTEXT = hexBytes(
        "06109a684c0510b38efa5ecbc9ff9cdf2db1df67a963342dbfdc8728bb386f74"
        "4800c6801314f1b22429d5ea44a5c0fdb55a0f57bf23a71d2315155c1f870c26"
        "f0400ac413536ac159b137f04da2"
    )
    CLIENT_PLAINTEXT = hexBytes(
        "000102030405060708090a0b0c0d0e0f f9200196 00000000f1003400"
        "7856341251002000e803000000000000000000001a000000"
        "ff060000734e61507059010c00004439ac2f0100000003000000"
    )
    SERVER_CIPHERTEXT = hexBytes(
        "0611986b480016b486f354c0c5f292d01b02540ae84caabdd08048aa3b5858e4"
        "da1c8005648146f319df516f41a15f9568cbe6dc"
    )
    SERVER_PLAINTEXT = hexBytes(
        "00000000000000000000000000000000 a68cd6af 00000000 f100 1a00"
        "78563412 52 00 2000 e8030000 00000000 01000000 00000000"
    )
    SNAPPY = hexBytes("ff 06 00 00 73 4e 61 50 70 59 | 01 0c 00 00 | 44 39 ac 2f | 01 00 00 00 03 00 00 00")
    SYN = hexBytes("01 00 00 00 03 00 00 00")

    def test_clientDecode(self) -> None:
        cipher = newBlockCrypt("", "")
        self.assertEqual(cipher.decrypt(self.CLIENT_CIPHERTEXT), self.CLIENT_PLAINTEXT)
        payload = decryptPacket(cipher, self.CLIENT_CIPHERTEXT)
        self.assertEqual(payload, self.CLIENT_PLAINTEXT[20:])
        packet = parseFECPacket(payload)
        self.assertEqual((packet.seqid, packet.flag, packet.size), (0, FLAG_DATA, 52))
        self.assertEqual(
            packet.kcp[:24],
            hexBytes("78 56 34 12 51 00 20 00 e8 03 00 00 00 00 00 00 00 00 00 00 1a 00 00 00"),
        )
        self.assertEqual(packet.kcp[24:], self.SNAPPY)
        self.assertEqual(SnappyFrameDecoder().feed(packet.kcp[24:]), self.SYN)

    def test_clientEncode(self) -> None:
        from gostrelay.wire.kcp.snappyframe import SnappyFrameEncoder

        snappy = SnappyFrameEncoder().encode(self.SYN)
        self.assertEqual(snappy, self.SNAPPY)
        segment = struct.pack("<IBBHIIII", 0x12345678, PUSH, 0, 32, 1000, 0, 0, len(snappy)) + snappy
        (fecPacket,) = FECEncoder(10, 3).encode(segment)
        self.assertEqual(fecPacket[:8], hexBytes("00000000 f100 3400"))
        datagram = encryptPacket(newBlockCrypt(), fecPacket, bytes(range(16)))
        self.assertEqual(datagram, self.CLIENT_CIPHERTEXT)

    def test_serverAck(self) -> None:
        cipher = newBlockCrypt()
        self.assertEqual(cipher.decrypt(self.SERVER_CIPHERTEXT), self.SERVER_PLAINTEXT)
        payload = decryptPacket(cipher, self.SERVER_CIPHERTEXT)
        self.assertEqual(FECDecoder().decode(payload)[0].data, self.SERVER_PLAINTEXT[28:])
        ack = struct.pack("<IBBHIIII", 0x12345678, 82, 0, 32, 1000, 0, 1, 0)
        (fecPacket,) = FECEncoder().encode(ack)
        self.assertEqual(encryptPacket(cipher, fecPacket, bytes(16)), self.SERVER_CIPHERTEXT)

    def test_wrongKey(self) -> None:
        for crypt, key in [("aes", "it's a secrect"), ("none", ""), ("aes-128", "")]:
            self.assertRaises(ChecksumError, decryptPacket, newBlockCrypt(crypt, key), self.CLIENT_CIPHERTEXT)


class CaptureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sessions = _sessions()

    def _datagrams(self, name: str) -> Iterator[tuple[dict, bytes]]:
        for datagram in self.sessions[name]["datagrams"]:
            yield datagram, vectors.loadBytes("kcp", *datagram["file"].split("/"))

    def _payloads(self, name: str, direction: str) -> list[bytes]:
        crypt, key = _sessionCrypt(self.sessions[name])
        cipher = newBlockCrypt(crypt, key)
        return [
            decryptPacket(cipher, raw)
            for datagram, raw in self._datagrams(name)
            if datagram["direction"] == direction
        ]

    def test_sessions(self) -> None:
        self.assertEqual(sorted(self.sessions), sorted(SESSIONS))
        for name in SESSIONS:
            self.assertEqual(len(self.sessions[name]["datagrams"]), self.sessions[name]["datagrams_count"])

    def test_filesMatchIndexAndCapture(self) -> None:
        for name in SESSIONS:
            session = self.sessions[name]
            lines = vectors.loadBytes("kcp", *session["capture"].split("/")).decode().splitlines()
            recorded = [json.loads(line) for line in lines if line.strip()]
            self.assertEqual(len(recorded), len(session["datagrams"]), name)
            for (datagram, raw), tap in zip(self._datagrams(name), recorded):
                self.assertEqual(hashlib.sha256(raw).hexdigest(), datagram["sha256"])
                self.assertEqual(len(raw), datagram["len"])
                self.assertEqual(raw.hex(), tap["hex"])
                self.assertEqual(tap["dir"], datagram["direction"])

    def test_keys(self) -> None:
        self.assertEqual(deriveKey("").hex(), self.sessions["default"]["crypto"]["pbkdf2_key_hex"])
        self.assertEqual(
            deriveKey("it's a secrect").hex(), self.sessions["key_secrect"]["crypto"]["pbkdf2_key_hex"]
        )

    def test_decryptAndReencrypt(self) -> None:
        """
        The right key gives the recorded nonce, CRC and plaintext, and the
        payload re-encrypts with the recorded nonce to the captured bytes.
        """
        for name in SESSIONS:
            cipher = newBlockCrypt(*_sessionCrypt(self.sessions[name]))
            for datagram, raw in self._datagrams(name):
                plaintext = hexBytes(datagram["plaintext_hex"])
                self.assertTrue(datagram["crc_ok"])
                self.assertEqual(cipher.decrypt(raw), plaintext, datagram["file"])
                self.assertEqual(plaintext[:16].hex(), datagram["nonce_hex"])
                self.assertEqual(plaintext[16:20].hex(), datagram["crc32_le_hex"])
                payload = decryptPacket(cipher, raw)
                self.assertEqual(payload, plaintext[20:])
                self.assertEqual(encryptPacket(cipher, payload, plaintext[:16]), raw, datagram["file"])

    def test_cryptNoneIsPlain(self) -> None:
        """
        crypt=none: the wire bytes are the plaintext, header included.
        """
        for name in ["crypt_none", "plain"]:
            for datagram, raw in self._datagrams(name):
                self.assertEqual(raw, hexBytes(datagram["plaintext_hex"]))

    def test_wrongKeysFailTheChecksum(self) -> None:
        """
        Every other (crypt, key) of the index's trials fails on every
        datagram, as index.json records (e.g. "0/22 datagrams CRC-valid").
        """
        for name in SESSIONS:
            session = self.sessions[name]
            for label, result in session["crypto"]["trials"].items():
                cipher = newBlockCrypt(*TRIALS[label])
                valid = 0
                for _, raw in self._datagrams(name):
                    try:
                        decryptPacket(cipher, raw)
                    except ChecksumError:
                        continue
                    valid += 1
                self.assertEqual(
                    f"{valid}/{len(session['datagrams'])} datagrams CRC-valid", result, (name, label)
                )

    def test_fecHeaders(self) -> None:
        for name in SESSIONS:
            cipher = newBlockCrypt(*_sessionCrypt(self.sessions[name]))
            for datagram, raw in self._datagrams(name):
                payload = decryptPacket(cipher, raw)
                fec = datagram["fec"]
                if fec is None:
                    self.assertFalse(isFEC(payload), datagram["file"])
                    continue
                packet = parseFECPacket(payload)
                self.assertEqual(packet.seqid, fec["seqid"])
                self.assertEqual(f"{packet.flag:04x}", fec["type_hex"])
                if fec["type"] == "data":
                    self.assertEqual(packet.flag, FLAG_DATA)
                    self.assertEqual(packet.size, fec["size"])
                    self.assertEqual(packet.size, len(payload) - 6)
                else:
                    self.assertEqual(packet.flag, FLAG_PARITY)
                    self.assertEqual(len(packet.payload), fec["parity_len"])

    def test_kcpBytes(self) -> None:
        """
        What FEC hands to KCP is exactly the recorded segments.
        """
        for name in SESSIONS:
            cipher = newBlockCrypt(*_sessionCrypt(self.sessions[name]))
            decoder = FECDecoder()
            for datagram, raw in self._datagrams(name):
                outputs = decoder.decode(decryptPacket(cipher, raw))
                segments = "".join(
                    s["header_hex"] + s.get("data_hex", "") for s in datagram.get("kcp_segments", [])
                )
                if datagram["fec"] is not None and datagram["fec"]["type"] == "parity":
                    self.assertEqual(outputs, [])
                else:
                    self.assertEqual([o.data.hex() for o in outputs], [segments], datagram["file"])

    def test_parity(self) -> None:
        """
        The only complete group (default, c2s) recomputes bit for bit, as
        the index's fec_check says.
        """
        for name in SESSIONS:
            for direction in ["c2s", "s2c"]:
                checked = _recomputeGroups(self, self._payloads(name, direction))
                expected = [g["group_first_seqid"] for g in self.sessions[name]["fec_check"][direction]]
                self.assertEqual(checked, expected, (name, direction))
                self.assertTrue(
                    all(g["parity_matches_rs"] for g in self.sessions[name]["fec_check"][direction])
                )
        self.assertEqual(_recomputeGroups(self, self._payloads("default", "c2s")), [0])

    def test_reconstructCapturedGroup(self) -> None:
        """
        Losing any three data shards of the captured group, the decoder
        rebuilds them from GOST's parity.
        """
        payloads = self._payloads("default", "c2s")
        group = _groupsBySeqid(payloads)[0]
        for lost in [(0, 1, 2), (7, 8, 9), (1, 4, 9)]:
            decoder = FECDecoder()
            recovered = []
            for position in range(13):
                if position not in lost:
                    recovered += [o.data for o in decoder.decode(group[position]) if o.recovered]
            self.assertEqual(recovered, [group[i][DATA_HEADER_SIZE:] for i in lost])

    def test_streams(self) -> None:
        """
        PUSH data by sn is the recorded stream; snappy chunks decode to the
        recorded smux frames, whose payloads are the relay messages.
        """
        for name in SESSIONS:
            session = self.sessions[name]
            for direction in ["c2s", "s2c"]:
                record = session["streams"][direction]
                kcpPackets = [o.data for p in self._payloads(name, direction) for o in FECDecoder().decode(p)]
                pushes = _pushStream(kcpPackets)
                self.assertEqual(record["kcp_push_sn"], list(range(len(pushes))))
                stream = b"".join(pushes)
                self.assertEqual(stream.hex(), record["stream_hex"], (name, direction))
                if session["snappy"]:
                    self.assertTrue(stream.startswith(STREAM_IDENTIFIER))
                    decoder = SnappyFrameDecoder()
                    decoded = b"".join(decoder.feed(p) for p in pushes)
                    self.assertEqual(decoder.buffered, 0)
                    self._checkChunks(stream, record["snappy_chunks"])
                else:
                    decoded = stream
                frames = "".join(f["frame_hex"] for f in record["smux_frames"])
                self.assertEqual(decoded.hex(), frames, (name, direction))
                self._checkSmuxAndRelay(decoded, record, direction)

    def _checkChunks(self, stream: bytes, recorded: list[dict]) -> None:
        chunks = _chunkList(stream)
        self.assertEqual([c[0] for c in chunks], [r["type"] for r in recorded])
        for (kind, body), record in zip(chunks, recorded):
            if kind == "stream_identifier":
                self.assertEqual(body.decode(), record["body"])
                continue
            self.assertEqual(body[:4][::-1].hex(), record["masked_crc32c"])
            self.assertEqual(maskedCRC32C(hexBytes(record["data"])), int(record["masked_crc32c"], 16))

    def _checkSmuxAndRelay(self, decoded: bytes, record: dict, direction: str) -> None:
        frames = smux.FrameParser(1).feed(decoded)
        self.assertEqual(
            [(f.version, SMUX_COMMANDS[f.cmd], f.sid, f.data.hex()) for f in frames],
            [(r["ver"], r["cmd"], r["sid"], r["data_hex"]) for r in record["smux_frames"]],
        )
        for sid, relay in record["relay"].items():
            data = b"".join(f.data for f in frames if f.sid == int(sid) and f.cmd == smux.PSH)
            if direction == "c2s":
                requestParser = RequestParser()
                request = requestParser.feed(data)
                assert request is not None
                expected = relay["relay_request"]
                self.assertEqual((request.version, request.cmd), (expected["version"], expected["cmd"]))
                auth, addr = request.userAuth, request.addr
                assert auth is not None and addr is not None
                self.assertEqual((auth.username, auth.password), ("user", "pass"))
                self.assertEqual((addr.host, addr.port), ("127.0.0.1", 28311))
                self.assertEqual(requestParser.remainder.hex(), relay["payload_hex"])
            else:
                responseParser = ResponseParser()
                response = responseParser.feed(data)
                assert response is not None
                self.assertEqual(response.status, relay["relay_response"]["status"])
                self.assertEqual(responseParser.remainder.hex(), relay["payload_hex"])


class EvidenceTests(SynchronousTestCase):
    """
    The longer recordings behind evidence_default.json and
    evidence_documented.json.
    """

    def _check(self, evidenceName: str) -> None:
        evidence = vectors.loadJSON("kcp", evidenceName)
        lines = vectors.loadBytes("kcp", "captures", evidence["capture"]).decode().splitlines()
        datagrams = [json.loads(line) for line in lines if line.strip()]
        self.assertEqual(len(datagrams), evidence["datagrams"])
        passphrase = evidence["crypto"]["passphrase"]
        cipher = newBlockCrypt(evidence["crypto"]["crypt"], passphrase)
        wrong = newBlockCrypt("aes", "" if passphrase else "it's a secrect")
        payloads: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
        for datagram in datagrams:
            raw = bytes.fromhex(datagram["hex"])
            self.assertLessEqual(len(raw), evidence["max_datagram_len"])
            payloads[datagram["dir"]].append(decryptPacket(cipher, raw))
            self.assertRaises(ChecksumError, decryptPacket, wrong, raw)

        for direction in ["c2s", "s2c"]:
            checked = _recomputeGroups(self, payloads[direction])
            self.assertEqual(len(checked), evidence["fec"]["rs_groups_checked"][direction], direction)

            decoder = FECDecoder()
            kcpPackets = [o.data for p in payloads[direction] for o in decoder.decode(p)]
            self.assertEqual(decoder.recoveredCount, 0)
            stream = b"".join(_pushStream(kcpPackets))
            kinds = Counter(kind for kind, _ in _chunkList(stream))
            self.assertEqual(dict(kinds), evidence["snappy_chunk_types"][direction])

            snappy = SnappyFrameDecoder()
            decoded = b"".join(snappy.feed(stream[i : i + 1000]) for i in range(0, len(stream), 1000))
            frames = smux.FrameParser(1).feed(decoded)
            summary = evidence["smux"][direction]
            self.assertEqual(sorted({f.version for f in frames}), summary["versions"])
            self.assertEqual(sorted({SMUX_COMMANDS[f.cmd] for f in frames}), summary["cmds"])
            self.assertEqual(sorted({f.sid for f in frames}), summary["sids"])
            self.assertEqual(max(len(f.data) for f in frames), summary["max_frame_len"])

    def test_default(self) -> None:
        self._check("evidence_default.json")

    def test_documented(self) -> None:
        self._check("evidence_documented.json")
