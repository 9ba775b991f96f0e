"""A local stand-in for an RFC 3161 Time-Stamp Authority (the local stack's and the tests' TSA).

It answers the protocol as a real TSA does: a DER ``TimeStampReq`` (RFC 3161 §2.4.1) in, a DER
``TimeStampResp`` (§2.4.2) out, whose token is a CMS ``SignedData`` (RFC 5652) over a ``TSTInfo``,
signed ECDSA P-256/SHA-256 by a certificate whose only, critical, extended key usage is
``id-kp-timeStamping`` (§2.3), with the RFC 5035 ``signingCertificateV2`` attribute (§2.4.2).
Over HTTP it speaks sigstore timestamp-authority's paths (``POST /api/v1/timestamp``,
``GET /api/v1/timestamp/certchain``) with the RFC 3161 §3.4 media types.

The fault knobs (``down``, ``wrong_imprint``, ``wrong_nonce``, ``garbage``, ``delay_seconds``) are
read on every request, so a test flips them on a running server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from local.pki import _name, read_key, write_key
from local.tls import JsonHandler

TIMESTAMP_PATH = "/api/v1/timestamp"
CERTCHAIN_PATH = "/api/v1/timestamp/certchain"
QUERY_TYPE = "application/timestamp-query"  # RFC 3161 §3.4
REPLY_TYPE = "application/timestamp-reply"
CHAIN_TYPE = "application/pem-certificate-chain"
#: The policy sigstore's timestamp-authority stamps under; any OID the verifier expects would do.
POLICY_OID = "1.3.6.1.4.1.57264.2"
ROOT_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=2)
MAX_REQUEST_BYTES = 64 * 1024
#: Hashes a request's messageImprint may use, with their digest lengths.
DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
GARBAGE = b"garbage: this is not a DER TimeStampResp\n"


class TimeStampResp(tsp.TimeStampResp):
    """RFC 3161 §2.4.2 ``TimeStampResp``: asn1crypto 1.5.1 declares ``timeStampToken`` mandatory,
    but the RFC makes it OPTIONAL, and a rejection carries none."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejected(Exception):
    """A request the TSA refuses: RFC 3161 §2.4.2 status ``rejection`` with ``failure``."""

    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class LocalTsa:
    """Creates (once, under ``directory``) and reloads a TSA root CA and its signing certificate,
    and answers RFC 3161 time-stamp requests with them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._root_cert_path, self._root_key_path = self.dir / "tsa-root.pem", self.dir / "tsa-root.key"
        self._leaf_cert_path, self._leaf_key_path = self.dir / "tsa.pem", self.dir / "tsa.key"
        if not self._usable(self._root_cert_path, self._root_key_path):
            self._make_root()
        root = _load_cert(self._root_cert_path)
        if not self._usable(self._leaf_cert_path, self._leaf_key_path) or not self._issued_by(root):
            self._make_leaf(root, read_key(self._root_key_path))
        self._root = root
        self._leaf = _load_cert(self._leaf_cert_path)
        self._key = read_key(self._leaf_key_path)
        self._leaf_der = self._leaf.public_bytes(serialization.Encoding.DER)
        self._leaf_asn1 = asn1_x509.Certificate.load(self._leaf_der)
        #: Fault knobs, read per request.
        self.down = False  # the HTTP handler answers 503
        self.wrong_imprint = False  # the token's messageImprint is of other bytes
        self.wrong_nonce = False  # the token's nonce is the request's + 1
        self.garbage = False  # the HTTP body is not DER
        self.delay_seconds = 0.0  # the HTTP handler waits this long before answering

    # -- the PKI ---------------------------------------------------------------------------------

    @staticmethod
    def _usable(cert: Path, key: Path) -> bool:
        if not (cert.exists() and key.exists()):
            return False
        return _load_cert(cert).not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE

    def _issued_by(self, root: x509.Certificate) -> bool:
        try:
            _load_cert(self._leaf_cert_path).verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _make_root(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("Stella Ops dev TSA root")
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_key(self._root_key_path, key)
        self._root_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _make_leaf(self, root: x509.Certificate, root_key: ec.EllipticCurvePrivateKey) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Stella Ops dev TSA"))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + LEAF_VALIDITY, root.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            # RFC 3161 §2.3: the one extended key usage, id-kp-timeStamping, MUST be critical.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        write_key(self._leaf_key_path, key)
        self._leaf_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def root_pem(self) -> str:
        return self._root.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def leaf_pem(self) -> str:
        return self._leaf.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def chain_pem(self) -> str:
        """Leaf then root: the Signer's ``TimestampAuthorityCertificates``."""
        return self.leaf_pem + self.root_pem

    @property
    def policy_oid(self) -> str:
        return POLICY_OID

    # -- the protocol ----------------------------------------------------------------------------

    def respond(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        """The DER ``TimeStampResp`` answering ``request_der``: granted with a token, or a
        rejection (badDataFormat, badAlg, unacceptedPolicy, unacceptedExtension) without one.
        ``now`` (timezone-aware; default the current time) becomes the token's genTime."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        answer: dict[str, object]
        try:
            request = self._parse(request_der)
        except _Rejected as rejected:
            answer = {
                "status": {
                    "status": "rejection",
                    "status_string": [rejected.text],
                    "fail_info": {rejected.failure},
                }
            }
        else:
            answer = {"status": {"status": "granted"}, "time_stamp_token": self._token(request, moment)}
        der: bytes = TimeStampResp(answer).dump()
        return der

    @staticmethod
    def _parse(request_der: bytes) -> tsp.TimeStampReq:
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # noqa: B018 -- asn1crypto parses lazily: force every field now
            version = request["version"].native
            algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
            digest = request["message_imprint"]["hashed_message"].native
            policy = request["req_policy"].native
            extensions = request["extensions"].native
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
            raise _Rejected("bad_data_format", f"not a DER TimeStampReq: {error}") from error
        # RFC 3161 §2.4.1: version v1; a messageImprint of a hash the TSA knows, of that length.
        if version != "v1":
            raise _Rejected("bad_data_format", f"unsupported TimeStampReq version {version}")
        if algorithm not in DIGEST_SIZES:
            raise _Rejected("bad_alg", f"unsupported hash algorithm {algorithm}")
        if len(digest) != DIGEST_SIZES[algorithm]:
            raise _Rejected("bad_data_format", f"a {algorithm} digest of {len(digest)} bytes")
        if policy is not None and policy != POLICY_OID:
            raise _Rejected("unaccepted_policy", f"policy {policy} is not {POLICY_OID}")
        if extensions:
            raise _Rejected("unaccepted_extensions", "this TSA accepts no request extensions")
        return request

    def _token(self, request: tsp.TimeStampReq, now: dt.datetime) -> cms.ContentInfo:
        imprint = tsp.MessageImprint.load(request["message_imprint"].dump())  # echoed as sent
        if self.wrong_imprint:
            other = hashlib.new(imprint["hash_algorithm"]["algorithm"].native, b"other bytes").digest()
            imprint = tsp.MessageImprint(
                {"hash_algorithm": imprint["hash_algorithm"].copy(), "hashed_message": other}
            )
        nonce = request["nonce"].native
        if nonce is not None and self.wrong_nonce:
            nonce += 1
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": POLICY_OID,
                "message_imprint": imprint,
                "serial_number": secrets.randbits(127) | 1 << 126,
                "gen_time": now.replace(microsecond=0),  # no fraction; accuracy says ±1 s
                "accuracy": {"seconds": 1},
                "nonce": nonce,
                "tsa": asn1_x509.GeneralName(name="directory_name", value=self._leaf_asn1.subject.copy()),
            }
        )
        content = cms.EncapsulatedContentInfo({"content_type": "tst_info", "content": tst_info})
        signer_info = self._signer_info(tst_info.dump(), now)
        signed_data: dict[str, object] = {
            "version": "v3",  # RFC 5652 §5.1: eContentType is not id-data
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": content,
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:  # RFC 3161 §2.4.1: certReq asks for the TSA's certificate
            signed_data["certificates"] = [self._leaf_asn1]
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})

    def _signer_info(self, tst_info_der: bytes, now: dt.datetime) -> cms.SignerInfo:
        issuer_serial = {
            "issuer": [asn1_x509.GeneralName(name="directory_name", value=self._leaf_asn1.issuer.copy())],
            "serial_number": self._leaf_asn1.serial_number,
        }
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {
                    "type": "signing_time",
                    "values": [cms.Time(name="utc_time", value=now.replace(microsecond=0))],
                },
                {"type": "message_digest", "values": [hashlib.sha256(tst_info_der).digest()]},
                # RFC 3161 §2.4.2 / RFC 5035: the signer's certificate, by its SHA-256.
                {
                    "type": "signing_certificate_v2",
                    "values": [
                        {
                            "certs": [
                                {
                                    "cert_hash": hashlib.sha256(self._leaf_der).digest(),
                                    "issuer_serial": issuer_serial,
                                }
                            ]
                        }
                    ],
                },
            ]
        )
        # RFC 5652 §5.4: the signature covers the DER of the SET OF attributes (tag 0x31, not [0]).
        signature = self._key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        return cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={
                        "issuer": self._leaf_asn1.issuer.copy(),
                        "serial_number": self._leaf_asn1.serial_number,
                    },
                ),
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": signed_attrs,
                "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                "signature": signature,
            }
        )


def handler_for(tsa: LocalTsa) -> type[BaseHTTPRequestHandler]:
    """A quiet HTTP/1.1 handler serving ``tsa`` on sigstore timestamp-authority's paths."""

    class TsaHandler(JsonHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != CERTCHAIN_PATH:
                return self.send_json(404, {"code": 404, "message": "not found"})
            self._send(200, tsa.chain_pem.encode("ascii"), CHAIN_TYPE)

        def do_POST(self) -> None:
            declared = self.headers.get("Content-Length") or "0"
            length = int(declared) if declared.isdigit() else -1
            if not 0 <= length <= MAX_REQUEST_BYTES:
                self.close_connection = True  # the body stays unread
                status = 413 if length > MAX_REQUEST_BYTES else 411
                return self.send_json(status, {"code": status, "message": "a Content-Length up to 64 KiB"})
            body = self.rfile.read(length)
            if urlsplit(self.path).path != TIMESTAMP_PATH:
                return self.send_json(404, {"code": 404, "message": "not found"})
            media_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if media_type != QUERY_TYPE:
                return self.send_json(415, {"code": 415, "message": f"Content-Type must be {QUERY_TYPE}"})
            if tsa.delay_seconds:
                time.sleep(tsa.delay_seconds)
            if tsa.down:
                return self.send_json(503, {"code": 503, "message": "timestamp authority unavailable"})
            self._send(200, GARBAGE if tsa.garbage else tsa.respond(body), REPLY_TYPE)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return TsaHandler
