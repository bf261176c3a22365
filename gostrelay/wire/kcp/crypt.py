"""
kcp-go's packet crypt layer as GOST configures it (spec-transports.md 4.3), sans-IO.

Every KCP datagram GOST sends is C{NONCE(16) | CRC32(4) | payload}, and the
I{whole} of it, nonce included, goes through the block crypt.  The nonce is
random so that the constant CFB IV kcp-go uses does no harm; the CRC (IEEE,
little-endian, over the payload) is the only integrity check there is, so a
wrong key or a different cipher on the peer shows up as nothing but checksum
failures (L{ChecksumError}).  C{crypt=none} keeps the 20-byte header, merely
unencrypted (confirmed by the C{crypt_none} capture).

The key is C{PBKDF2-HMAC-SHA1(kcp.key, "kcp-go", 4096, 32)}; GOST's effective
default C{kcp.key} is the I{empty} string (spec 4.2), not the documented
"it's a secrect".  Cipher names follow go-gost/x C{BlockCrypt}: exact,
case-sensitive matches, and every name it does not know -- C{""}, C{"AES"},
kcptun's C{"null"} -- silently means AES-256, so we do the same
(L{effectiveCrypt} says what a name turns into).

The CFB of kcp-go is ordinary full-block CFB restarted from a fixed IV for
each datagram (the final partial block XORed with a truncated keystream
block), i.e. what C{cryptography}'s CFB does; 8-byte-block ciphers use the
first 8 bytes of the IV.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from functools import lru_cache
from typing import Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms

try:  # cryptography >= 43 keeps the legacy ciphers (and, later, CFB) apart
    from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
except ImportError:  # pragma: no cover - older cryptography
    decrepit = algorithms  # type: ignore[misc]
try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[assignment]

#: PBKDF2 salt go-gost/x uses (C{DefaultSalt}).
DEFAULT_SALT = b"kcp-go"
PBKDF2_ITERATIONS = 4096
KEY_SIZE = 32

#: kcp-go's C{initialVector}, the CFB IV of every datagram.
INITIAL_VECTOR = bytes.fromhex("a7734f9c12ac1b01a415f2c1fc78e66b")

#: kcp-go's C{saltxor} and the length of the xor table (C{mtuLimit}).
XOR_SALT = b"sH3CIVoF#rWLtJo6"
XOR_ITERATIONS = 32
XOR_TABLE_SIZE = 1500

NONCE_SIZE = 16
CRC_SIZE = 4
#: Bytes the crypt layer puts in front of the payload.
HEADER_SIZE = NONCE_SIZE + CRC_SIZE

_CRC = struct.Struct("<I")


class CryptError(ValueError):
    """
    A datagram cannot be decrypted, or a crypt cannot be set up.
    """


class ChecksumError(CryptError):
    """
    The CRC of a decrypted datagram does not match: the peer uses another
    key or cipher (or the datagram is not KCP at all).
    """


class ShortDatagramError(CryptError):
    """
    A datagram is shorter than the 20-byte nonce+CRC header.
    """


class UnsupportedCryptError(CryptError):
    """
    GOST accepts this cipher name but we have no implementation of it.
    """


def deriveKey(passphrase: str | bytes, salt: bytes = DEFAULT_SALT) -> bytes:
    """
    The 32-byte key GOST derives from C{kcp.key}:
    C{PBKDF2-HMAC-SHA1(passphrase, salt, 4096, 32)}.  A C{str} is encoded as
    UTF-8 (Go's C{[]byte(key)}).
    """
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8", "surrogateescape")
    return hashlib.pbkdf2_hmac("sha1", passphrase, salt, PBKDF2_ITERATIONS, KEY_SIZE)


class BlockCrypt:
    """
    One of kcp-go's C{BlockCrypt}s: transforms a whole datagram (nonce and
    CRC included) in one go.  Instances are stateless between datagrams.

    @ivar name: the effective cipher name (C{"aes"}, C{"aes-128"}, ...).
    """

    name: str = "?"

    def encrypt(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, data: bytes) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class CFBCrypt(BlockCrypt):
    """
    A block cipher in kcp-go's per-datagram CFB mode (full-block feedback,
    fixed IV).
    """

    def __init__(self, name: str, algorithm: BlockCipherAlgorithm) -> None:
        self.name = name
        self._algorithm = algorithm
        self._iv = INITIAL_VECTOR[: algorithm.block_size // 8]
        try:
            self._cipher().encryptor()
        except UnsupportedAlgorithm as e:
            raise UnsupportedCryptError(
                f"crypt {name!r} is not available in this OpenSSL build: {e}"
            ) from None

    def _cipher(self) -> Cipher:  # type: ignore[type-arg]
        return Cipher(self._algorithm, CFB(self._iv))

    def encrypt(self, data: bytes) -> bytes:
        encryptor = self._cipher().encryptor()
        return encryptor.update(data) + encryptor.finalize()

    def decrypt(self, data: bytes) -> bytes:
        decryptor = self._cipher().decryptor()
        return decryptor.update(data) + decryptor.finalize()


class XORCrypt(BlockCrypt):
    """
    kcp-go's C{simpleXORBlockCrypt}: the datagram XORed with a 1500-byte
    table C{PBKDF2-HMAC-SHA1(key, "sH3CIVoF#rWLtJo6", 32, 1500)}, where
    C{key} is the already derived 32-byte key.  Bytes past 1500 (which
    kcp-go never sends) are left as they are, as C{xor.Bytes} does.
    """

    name = "xor"

    def __init__(self, key: bytes) -> None:
        self.table = hashlib.pbkdf2_hmac("sha1", key, XOR_SALT, XOR_ITERATIONS, XOR_TABLE_SIZE)
        self._tableInt = int.from_bytes(self.table, "little")

    def encrypt(self, data: bytes) -> bytes:
        n = min(len(data), XOR_TABLE_SIZE)
        mask = self._tableInt & ((1 << (8 * n)) - 1)
        head = (int.from_bytes(data[:n], "little") ^ mask).to_bytes(n, "little")
        return head + bytes(data[n:])

    decrypt = encrypt


class NoneCrypt(BlockCrypt):
    """
    C{crypt=none}: no transformation (the nonce+CRC header still exists).
    """

    name = "none"

    def encrypt(self, data: bytes) -> bytes:
        return bytes(data)

    decrypt = encrypt


class Salsa20Crypt(BlockCrypt):
    """
    kcp-go's C{salsa20BlockCrypt}: the first 8 bytes (part of the nonce)
    are the Salsa20 nonce and stay in clear; the rest is XORed with the
    keystream.  Needs pycryptodome, which is optional.
    """

    name = "salsa20"

    def __init__(self, key: bytes) -> None:
        # Imported here: pycryptodome is an optional dependency.
        try:
            from Crypto.Cipher import Salsa20  # type: ignore[import-not-found]
        except ImportError:
            try:
                from Cryptodome.Cipher import Salsa20  # type: ignore[import-not-found,no-redef]
            except ImportError:
                raise UnsupportedCryptError(
                    "crypt 'salsa20' is not implemented: it needs pycryptodome, which is not installed"
                ) from None
        self._salsa20 = Salsa20
        self._key = key

    def encrypt(self, data: bytes) -> bytes:
        if len(data) < 8:
            return bytes(data)
        stream = self._salsa20.new(key=self._key, nonce=bytes(data[:8]))
        return bytes(data[:8]) + stream.encrypt(bytes(data[8:]))

    decrypt = encrypt


def _unsupported(name: str) -> Callable[[bytes], BlockCrypt]:
    def factory(key: bytes) -> BlockCrypt:
        raise UnsupportedCryptError(
            f"crypt {name!r} is not implemented (GOST accepts it; use aes, aes-128, "
            f"aes-192, sm4, 3des, blowfish, cast5, xor or none)"
        )

    return factory


def _cfb(name: str, make: Callable[[bytes], BlockCipherAlgorithm]) -> Callable[[bytes], BlockCrypt]:
    return lambda key: CFBCrypt(name, make(key))


#: go-gost/x C{BlockCrypt}: name -> factory taking the derived 32-byte key.
_CRYPTS: dict[str, Callable[[bytes], BlockCrypt]] = {
    "aes": _cfb("aes", lambda k: algorithms.AES(k)),
    "aes-128": _cfb("aes-128", lambda k: algorithms.AES(k[:16])),
    "aes-192": _cfb("aes-192", lambda k: algorithms.AES(k[:24])),
    "sm4": _cfb("sm4", lambda k: algorithms.SM4(k[:16])),
    "3des": _cfb("3des", lambda k: decrepit.TripleDES(k[:24])),
    "blowfish": _cfb("blowfish", lambda k: decrepit.Blowfish(k)),
    "cast5": _cfb("cast5", lambda k: decrepit.CAST5(k[:16])),
    "xor": XORCrypt,
    "none": lambda k: NoneCrypt(),
    "salsa20": Salsa20Crypt,
    "twofish": _unsupported("twofish"),
    "tea": _unsupported("tea"),
    "xtea": _unsupported("xtea"),
}

#: Every name GOST gives a meaning of its own (anything else means "aes").
KNOWN_CRYPTS = frozenset(_CRYPTS)


def effectiveCrypt(crypt: str) -> str:
    """
    The cipher GOST actually uses for the C{kcp.crypt} value C{crypt}:
    itself when GOST knows it, C{"aes"} (AES-256) otherwise -- including
    C{""}, upper-case spellings and kcptun names like C{"null"}.
    """
    return crypt if crypt in _CRYPTS else "aes"


@lru_cache(maxsize=32)
def newBlockCrypt(crypt: str = "", key: str | bytes = "", salt: bytes = DEFAULT_SALT) -> BlockCrypt:
    """
    The crypt GOST sets up for C{kcp.crypt=crypt} and C{kcp.key=key}
    (go-gost/x C{BlockCrypt(key, crypt, salt)}); the defaults are GOST's
    effective ones: AES-256 keyed from the empty passphrase.

    @raise UnsupportedCryptError: for C{twofish}, C{tea}, C{xtea}, and
        C{salsa20} without pycryptodome.

    Instances are stateless, so one is made per configuration and shared:
    the key derivation (4096 rounds of PBKDF2) costs about 2.5 ms, which
    every new KCP session paid, so that spoofed first datagrams from many
    addresses cost the listener milliseconds each (issue 19.6).
    """
    return _CRYPTS[effectiveCrypt(crypt)](deriveKey(key, salt))


def checksum(payload: bytes) -> int:
    """
    The CRC kcp-go puts in front of C{payload}: zlib/IEEE CRC-32.
    """
    return zlib.crc32(payload) & 0xFFFFFFFF


def encryptPacket(cipher: BlockCrypt, payload: bytes, nonce: bytes | None = None) -> bytes:
    """
    The UDP payload for C{payload} (an FEC packet or raw KCP segments):
    C{cipher(nonce | crc32(payload) LE | payload)}.

    @param nonce: 16 bytes; random when not given (tests pass the nonce of
        a capture to reproduce it exactly).
    """
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise CryptError(f"the nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
    return cipher.encrypt(bytes(nonce) + _CRC.pack(checksum(payload)) + bytes(payload))


def decryptPacket(cipher: BlockCrypt, datagram: bytes) -> bytes:
    """
    The payload of a received UDP datagram: decrypt it whole, drop the
    nonce, verify and drop the CRC.  (kcp-go then also ignores payloads
    shorter than a KCP header, 24 bytes; that check is the caller's.)

    @raise ShortDatagramError: shorter than 20 bytes.
    @raise ChecksumError: the CRC does not match -- the peer's key or
        crypt differs from ours.
    """
    if len(datagram) < HEADER_SIZE:
        raise ShortDatagramError(f"{len(datagram)}-byte datagram is shorter than the crypt header")
    plain = cipher.decrypt(datagram)
    payload = plain[HEADER_SIZE:]
    (expected,) = _CRC.unpack_from(plain, NONCE_SIZE)
    actual = checksum(payload)
    if actual != expected:
        raise ChecksumError(f"checksum mismatch: datagram says {expected:08x}, payload has {actual:08x}")
    return payload


__all__ = [
    "CRC_SIZE",
    "DEFAULT_SALT",
    "HEADER_SIZE",
    "INITIAL_VECTOR",
    "KEY_SIZE",
    "KNOWN_CRYPTS",
    "NONCE_SIZE",
    "BlockCrypt",
    "CFBCrypt",
    "ChecksumError",
    "CryptError",
    "NoneCrypt",
    "Salsa20Crypt",
    "ShortDatagramError",
    "UnsupportedCryptError",
    "XORCrypt",
    "checksum",
    "decryptPacket",
    "deriveKey",
    "effectiveCrypt",
    "encryptPacket",
    "newBlockCrypt",
]
