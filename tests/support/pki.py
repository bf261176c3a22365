"""
A small PKI made with C{cryptography} (a CA, server and client
certificates) and an isolated C{HOME}/working directory, so that no test
reads or writes the real C{~/.gost} or a stray C{cert.pem}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial import unittest


def _pemKey(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CA:
    """
    A certificate authority (ECDSA P-256) whose certificate is in
    C{self.certFile}.
    """

    def __init__(self, pki: PKI, name: str) -> None:
        self.pki = pki
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.certFile = pki.write(f"{name}-ca.pem", self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        commonName: str,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        expired: bool = False,
        client: bool = False,
    ) -> tuple[str, str]:
        """
        A leaf certificate signed by this CA; returns C{(certFile, keyFile)}.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            notBefore, notAfter = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            notBefore, notAfter = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return (
            self.pki.write(f"{name}.pem", certificate.public_bytes(serialization.Encoding.PEM)),
            self.pki.write(f"{name}-key.pem", _pemKey(key)),
        )


class PKI:
    """
    Certificates for one test, in a directory of their own.  C{ca},
    C{server} (localhost + 127.0.0.1), C{expired}, C{wrongName} (a name
    that is neither localhost nor 127.0.0.1), C{client} (clientAuth) are
    made on construction; C{otherCA} is an unrelated CA.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.ca = CA(self, "main")
        self.otherCA = CA(self, "other")
        self.server = self.ca.issue("server", "localhost", dns=("localhost",), ips=("127.0.0.1",))
        self.expired = self.ca.issue("expired", "localhost", dns=("localhost",), ips=("127.0.0.1",), expired=True)
        self.wrongName = self.ca.issue("wrongname", "elsewhere.test", dns=("elsewhere.test",))
        self.client = self.ca.issue("client", "test client", client=True)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path


def isolate(testCase: unittest.TestCase) -> tuple[str, str]:
    """
    Point C{HOME} at an empty temporary directory and make another empty
    temporary directory the working directory, for the rest of the test
    (both restored at cleanup).  Returns C{(home, cwd)}.
    """
    home = os.path.abspath(testCase.mktemp())
    cwd = os.path.abspath(testCase.mktemp())
    os.makedirs(home)
    os.makedirs(cwd)
    oldHome = os.environ.get("HOME")
    oldCwd = os.getcwd()

    def restore() -> None:
        os.chdir(oldCwd)
        if oldHome is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = oldHome

    testCase.addCleanup(restore)
    os.environ["HOME"] = home
    os.chdir(cwd)
    return home, cwd
