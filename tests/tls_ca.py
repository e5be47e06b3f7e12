"""A test certificate authority made with ``cryptography``: a root, an intermediate, and leaf pairs for localhost.

The cert file holds the full chain (leaf, then intermediate); clients trust only the root, so a
handshake succeeds only when the server sends the chain.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Leaf:
    """One server pair: the chain PEM (leaf + intermediate), the key PEM, and the leaf's serial number."""

    chain_pem: bytes
    key_pem: bytes
    serial: int
    not_after: datetime.datetime

    def write(self, cert_file: Path, key_file: Path) -> None:
        """Write both files in place (the key 0600)."""
        cert_file.write_bytes(self.chain_pem)
        key_file.touch(mode=0o600)
        key_file.chmod(0o600)
        key_file.write_bytes(self.key_pem)


class TestCA:
    """A root and an intermediate CA; ``issue`` makes leaf pairs for localhost and 127.0.0.1."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._certificate(_name("jwksd test root"), self.root_key, _name("jwksd test root"),
                                      self.root_key, not_before=now - DAY, not_after=now + 30 * DAY, ca=True)
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._certificate(_name("jwksd test intermediate"), self.intermediate_key,
                                              self.root.subject, self.root_key, not_before=now - DAY,
                                              not_after=now + 30 * DAY, ca=True)

    @staticmethod
    def _certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                     issuer_key: ec.EllipticCurvePrivateKey, *, not_before: datetime.datetime,
                     not_after: datetime.datetime, ca: bool, hosts: tuple[str, ...] = ()) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if hosts:
            names = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
            builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                      critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    @property
    def root_pem(self) -> bytes:
        return _pem(self.root)

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_pem)
        return path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA's root only."""
        context = ssl.create_default_context(cadata=self.root_pem.decode())
        return context

    def issue(self, name: str = "localhost", *, valid_days: float = 10, expired: bool = False) -> Leaf:
        """A leaf for ``name``, localhost and 127.0.0.1, signed by the intermediate (already expired if asked)."""
        now = datetime.datetime.now(datetime.UTC)
        not_before, not_after = (now - 3 * DAY, now - DAY) if expired else (now - DAY, now + valid_days * DAY)
        key = ec.generate_private_key(ec.SECP256R1())
        hosts = tuple(dict.fromkeys((name, "localhost", "127.0.0.1")))
        leaf = self._certificate(_name(name), key, self.intermediate.subject, self.intermediate_key,
                                 not_before=not_before, not_after=not_after, ca=False, hosts=hosts)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return Leaf(chain_pem=_pem(leaf) + _pem(self.intermediate), key_pem=key_pem, serial=leaf.serial_number,
                    not_after=not_after)
