"""The development PKI under ``.local/``: a CA, the gateway's server certificate and client certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def pem(self) -> str:
        return self.cert.read_text()


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stella Ops dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class DevPki:
    """Creates (once) and reads the dev CA and the certificates it issues."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = Issued(self.dir / "ca.pem", self.dir / "ca.key")
        if not self.ca.cert.exists() or self._expiring(self.ca.cert):
            self._make_ca()

    @staticmethod
    def _expiring(path: Path) -> bool:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=2)

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Stella Ops dev CA"))
            .issuer_name(_name("Stella Ops dev CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 3)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        write_key(self.ca.key, key)
        self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        *,
        server: bool = False,
        force: bool = False,
        addresses: tuple[str, ...] = ("127.0.0.1",),
    ) -> Issued:
        """A leaf signed by the CA: a TLS server cert for localhost and ``addresses``, or a client cert."""
        issued = Issued(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        if issued.cert.exists() and not force and not self._expiring(issued.cert):
            return issued
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses)]
                ),
                critical=False,
            )
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        write_key(issued.key, key)
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return issued


class IssuerKey:
    """An ES256 key that signs tokens (the Authority's OpToks, Licensing's PoEs): created once
    under ``path`` (0600), published as a one-key JWKS whose ``kid`` is its RFC 7638 thumbprint."""

    def __init__(self, path: Path) -> None:
        import json

        from jwt.algorithms import ECAlgorithm

        from stellaops_signer.domain.tokens import jwk_thumbprint

        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            write_key(path, key)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        self.kid = jwk_thumbprint(jwk)
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}]}
