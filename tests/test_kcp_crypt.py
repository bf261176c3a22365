"""
Tests for L{gostrelay.wire.kcp.crypt}: kcp-go's packet crypt as GOST sets
it up (spec-transports.md 4.3).

  - L{KeyTests}: PBKDF2 key derivation (the spec's two keys) and GOST's
    mapping of C{kcp.crypt} names, unknown ones meaning AES-256.
  - L{CFBTests}: our CFB equals kcp-go's hand-written CFB loop (re-created
    here on ECB) for every block cipher we support and many lengths.
  - L{XORAndNoneTests}: the xor table and the none crypt.
  - L{PacketTests}: the nonce|CRC|payload layout and its errors.
  - L{PropertyTests} (hypothesis): round trips; any bit flipped after the
    first block fails the checksum.

The captures and the worked example are in C{test_kcp_vectors}.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.kcp import crypt
from gostrelay.wire.kcp.crypt import (
    HEADER_SIZE,
    INITIAL_VECTOR,
    CFBCrypt,
    ChecksumError,
    CryptError,
    NoneCrypt,
    ShortDatagramError,
    UnsupportedCryptError,
    XORCrypt,
    decryptPacket,
    deriveKey,
    effectiveCrypt,
    encryptPacket,
    newBlockCrypt,
)

EMPTY_KEY = bytes.fromhex("b23383c32eefa3753ab6db6e639a0ddc3b50ec6b6c623c9171a15ba0879945cd")
SECRECT_KEY = bytes.fromhex("25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444")

#: The crypts we implement (salsa20 only with pycryptodome).
IMPLEMENTED = ["aes", "aes-128", "aes-192", "sm4", "3des", "blowfish", "cast5", "xor", "none"]

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def _kcpGoCFB(algorithm: object, data: bytes) -> bytes:
    """
    kcp-go's C{encrypt}: C{tbl = E(IV)}; per block C{d = s ^ tbl; tbl = E(d)};
    the tail XORed with the first bytes of C{tbl}.
    """
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()  # type: ignore[arg-type]
    size = algorithm.block_size // 8  # type: ignore[attr-defined]
    tbl = encryptor.update(INITIAL_VECTOR[:size])
    out = bytearray()
    for base in range(0, len(data), size):
        block = data[base : base + size]
        d = bytes(a ^ b for a, b in zip(block, tbl))
        out += d
        if len(block) == size:
            tbl = encryptor.update(d)
    return bytes(out)


class KeyTests(SynchronousTestCase):
    def test_emptyPassphrase(self) -> None:
        """
        GOST's effective default key (spec 4.2/4.3).
        """
        self.assertEqual(deriveKey(""), EMPTY_KEY)
        self.assertEqual(deriveKey(b""), EMPTY_KEY)

    def test_documentedPassphrase(self) -> None:
        self.assertEqual(deriveKey("it's a secrect"), SECRECT_KEY)

    def test_pbkdf2Parameters(self) -> None:
        self.assertEqual(deriveKey("x", b"salt"), hashlib.pbkdf2_hmac("sha1", b"x", b"salt", 4096, 32))

    def test_unicodePassphraseIsUTF8(self) -> None:
        self.assertEqual(deriveKey("clé"), deriveKey("clé".encode()))

    def test_knownNames(self) -> None:
        for name in IMPLEMENTED + ["salsa20", "twofish", "tea", "xtea"]:
            self.assertEqual(effectiveCrypt(name), name)

    def test_unknownNamesAreAES(self) -> None:
        """
        go-gost/x C{BlockCrypt}: the default branch is AES-256, for the empty
        string, other spellings and kcptun's names alike.
        """
        for name in ["", "AES", "Aes-128", "null", "aes-128-gcm", "chacha20", "NONE"]:
            self.assertEqual(effectiveCrypt(name), "aes", name)
        reference = newBlockCrypt("aes")
        for name in ["", "AES", "null"]:
            cipher = newBlockCrypt(name)
            self.assertEqual(cipher.name, "aes")
            self.assertEqual(cipher.encrypt(b"x" * 40), reference.encrypt(b"x" * 40))

    def test_defaultIsAES256EmptyKey(self) -> None:
        cipher = newBlockCrypt()
        expected = Cipher(algorithms.AES(EMPTY_KEY), crypt.CFB(INITIAL_VECTOR)).encryptor()
        self.assertEqual(cipher.encrypt(b"y" * 50), expected.update(b"y" * 50) + expected.finalize())

    def test_keyLengths(self) -> None:
        """
        Which part of the derived key each cipher takes.
        """
        data = bytes(range(64))
        expectations = {
            "aes": algorithms.AES(EMPTY_KEY),
            "aes-128": algorithms.AES(EMPTY_KEY[:16]),
            "aes-192": algorithms.AES(EMPTY_KEY[:24]),
            "sm4": algorithms.SM4(EMPTY_KEY[:16]),
            "3des": decrepit.TripleDES(EMPTY_KEY[:24]),
            "blowfish": decrepit.Blowfish(EMPTY_KEY),
            "cast5": decrepit.CAST5(EMPTY_KEY[:16]),
        }
        for name, algorithm in expectations.items():
            self.assertEqual(newBlockCrypt(name).encrypt(data), _kcpGoCFB(algorithm, data), name)

    def test_unimplementedNamesSayWhich(self) -> None:
        for name in ["twofish", "tea", "xtea"]:
            e = self.assertRaises(UnsupportedCryptError, newBlockCrypt, name)
            self.assertIn(repr(name), str(e))

    def test_salsa20(self) -> None:
        """
        salsa20 works with pycryptodome and otherwise says that it is
        salsa20 that is missing.
        """
        try:
            cipher = newBlockCrypt("salsa20")
        except UnsupportedCryptError as e:
            self.assertIn("salsa20", str(e))
            return
        packet = encryptPacket(cipher, b"payload" * 5, bytes(range(16)))
        self.assertEqual(packet[:8], bytes(range(8)))
        self.assertEqual(decryptPacket(cipher, packet), b"payload" * 5)


class CFBTests(SynchronousTestCase):
    def test_matchesKCPGoLoop(self) -> None:
        """
        Standard full-block CFB restarted from the fixed IV equals kcp-go's
        loop, partial final block included, for 16- and 8-byte ciphers.
        """
        data = bytes((i * 37 + 11) & 0xFF for i in range(1500))
        for name, algorithm in [
            ("aes", algorithms.AES(EMPTY_KEY)),
            ("aes-128", algorithms.AES(EMPTY_KEY[:16])),
            ("3des", decrepit.TripleDES(EMPTY_KEY[:24])),
        ]:
            cipher = newBlockCrypt(name)
            for length in list(range(20, 70)) + [127, 128, 129, 1400, 1500]:
                self.assertEqual(
                    cipher.encrypt(data[:length]), _kcpGoCFB(algorithm, data[:length]), (name, length)
                )

    def test_eachDatagramRestartsFromIV(self) -> None:
        cipher = newBlockCrypt()
        self.assertEqual(cipher.encrypt(b"a" * 33), cipher.encrypt(b"a" * 33))

    def test_decryptInvertsEncrypt(self) -> None:
        for name in IMPLEMENTED:
            cipher = newBlockCrypt(name, "k")
            data = bytes(range(256)) * 3
            self.assertEqual(cipher.decrypt(cipher.encrypt(data)), data, name)

    def test_type(self) -> None:
        self.assertIsInstance(newBlockCrypt("aes-192"), CFBCrypt)
        self.assertIn("aes-192", repr(newBlockCrypt("aes-192")))


class XORAndNoneTests(SynchronousTestCase):
    def test_xorTable(self) -> None:
        """
        The table is PBKDF2-HMAC-SHA1 of the I{derived} key with kcp-go's
        salt, 32 iterations, 1500 bytes; the datagram is XORed with it.
        """
        cipher = newBlockCrypt("xor", "")
        self.assertIsInstance(cipher, XORCrypt)
        table = hashlib.pbkdf2_hmac("sha1", EMPTY_KEY, b"sH3CIVoF#rWLtJo6", 32, 1500)
        self.assertEqual(cipher.table, table)  # type: ignore[attr-defined]
        data = bytes(range(256)) * 5
        self.assertEqual(cipher.encrypt(data), bytes(a ^ b for a, b in zip(data, table)))

    def test_xorBeyondTable(self) -> None:
        """
        C{xor.Bytes} stops at the shorter operand: bytes past 1500 stay.
        """
        cipher = newBlockCrypt("xor", "k")
        data = b"\x55" * 1600
        out = cipher.encrypt(data)
        self.assertEqual(out[1500:], data[1500:])
        self.assertEqual(cipher.decrypt(out), data)

    def test_xorEmpty(self) -> None:
        self.assertEqual(newBlockCrypt("xor").encrypt(b""), b"")

    def test_none(self) -> None:
        cipher = newBlockCrypt("none", "ignored")
        self.assertIsInstance(cipher, NoneCrypt)
        self.assertEqual(cipher.encrypt(b"abc"), b"abc")

    def test_noneKeepsHeader(self) -> None:
        """
        crypt=none still puts the nonce and the CRC in front (spec 4.3, the
        crypt_none capture).
        """
        nonce = bytes(range(16))
        packet = encryptPacket(newBlockCrypt("none"), b"payload", nonce)
        self.assertEqual(packet, nonce + struct.pack("<I", zlib.crc32(b"payload")) + b"payload")


class PacketTests(SynchronousTestCase):
    def test_layout(self) -> None:
        cipher = newBlockCrypt()
        nonce = b"N" * 16
        packet = encryptPacket(cipher, b"hello world", nonce)
        plain = cipher.decrypt(packet)
        self.assertEqual(plain[:16], nonce)
        self.assertEqual(plain[16:20], struct.pack("<I", zlib.crc32(b"hello world")))
        self.assertEqual(plain[20:], b"hello world")
        self.assertEqual(len(packet), HEADER_SIZE + 11)

    def test_randomNonce(self) -> None:
        cipher = newBlockCrypt("none")
        a, b = encryptPacket(cipher, b"x"), encryptPacket(cipher, b"x")
        self.assertNotEqual(a[:16], b[:16])
        self.assertEqual(decryptPacket(cipher, a), b"x")

    def test_badNonce(self) -> None:
        self.assertRaises(CryptError, encryptPacket, newBlockCrypt(), b"x", b"short")

    def test_emptyPayload(self) -> None:
        cipher = newBlockCrypt()
        self.assertEqual(decryptPacket(cipher, encryptPacket(cipher, b"")), b"")

    def test_short(self) -> None:
        e = self.assertRaises(ShortDatagramError, decryptPacket, newBlockCrypt(), b"\0" * 19)
        self.assertIsInstance(e, CryptError)

    def test_wrongKey(self) -> None:
        packet = encryptPacket(newBlockCrypt("aes", ""), b"some kcp bytes" * 3)
        e = self.assertRaises(ChecksumError, decryptPacket, newBlockCrypt("aes", "other"), packet)
        self.assertIsInstance(e, CryptError)
        self.assertIsInstance(e, ValueError)

    def test_wrongCrypt(self) -> None:
        packet = encryptPacket(newBlockCrypt("aes"), b"some kcp bytes" * 3)
        for name in ["aes-128", "none", "xor"]:
            self.assertRaises(ChecksumError, decryptPacket, newBlockCrypt(name), packet)


class PropertyTests(SynchronousTestCase):
    @PROPERTY_SETTINGS
    @given(
        st.sampled_from(IMPLEMENTED),
        st.text(max_size=20),
        st.binary(max_size=1480),
        st.binary(min_size=16, max_size=16),
    )
    def test_roundTrip(self, name: str, key: str, payload: bytes, nonce: bytes) -> None:
        cipher = newBlockCrypt(name, key)
        packet = encryptPacket(cipher, payload, nonce)
        self.assertEqual(len(packet), HEADER_SIZE + len(payload))
        self.assertEqual(decryptPacket(cipher, packet), payload)

    @PROPERTY_SETTINGS
    @given(st.sampled_from(IMPLEMENTED), st.binary(max_size=300), st.data())
    def test_bitFlipFailsChecksum(self, name: str, payload: bytes, data: st.DataObject) -> None:
        """
        A flipped bit anywhere from the CRC on is caught (the nonce itself
        is not covered: xor/none never look at it).
        """
        cipher = newBlockCrypt(name)
        packet = bytearray(encryptPacket(cipher, payload))
        position = data.draw(st.integers(min_value=16, max_value=len(packet) - 1))
        packet[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        self.assertRaises(ChecksumError, decryptPacket, cipher, bytes(packet))
