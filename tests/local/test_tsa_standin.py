"""Contract tests of the RFC 3161 TSA stand-in: its answers are real time-stamp responses,
accepted by independent verifiers (rfc3161-client, ``openssl ts``), and each fault knob
breaks exactly what it names (spec §5.5, §7, §8)."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    TimeStampRequest,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from local.tsa import LocalTsa, TimeStampResp, handler_for

DATA = b"the signature bytes to timestamp"
QUERY = {"Content-Type": "application/timestamp-query"}
REJECTION = 2  # RFC 3161 §2.4.2 PKIStatus


@pytest.fixture(scope="module")
def tsa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tsa")


@pytest.fixture(scope="module")
def served(tsa_dir: Path) -> Iterator[tuple[LocalTsa, str]]:
    tsa = LocalTsa(tsa_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(tsa))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield tsa, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def tsa(served: tuple[LocalTsa, str]) -> Iterator[LocalTsa]:
    """The served TSA, its fault knobs reset after each test."""
    yield served[0]
    served[0].down = served[0].wrong_imprint = served[0].wrong_nonce = served[0].garbage = False
    served[0].delay_seconds = 0.0


@pytest.fixture
def url(served: tuple[LocalTsa, str]) -> str:
    return served[1] + "/api/v1/timestamp"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def build_request(data: bytes = DATA, *, cert_req: bool = True) -> TimeStampRequest:
    """What the Signer sends (§5.5): SHA-256 of the bytes, a nonce, ``certReq``."""
    return (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=cert_req)
        .build()
    )


def post(http: requests.Session, url: str, body: bytes) -> requests.Response:
    return http.post(url, data=body, headers=QUERY, timeout=5)


def stamp(http: requests.Session, url: str, request: TimeStampRequest) -> bytes:
    answer = post(http, url, request.as_bytes())
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/timestamp-reply"
    return answer.content


def certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def verifier(tsa: LocalTsa, request: TimeStampRequest) -> VerifierBuilder:
    return VerifierBuilder(
        roots=[certificate(tsa.root_pem)],
        intermediates=[],
        nonce=request.nonce,
        tsa_certificate=certificate(tsa.leaf_pem),
    )


def decoded(der: bytes) -> TimeStampResponse:
    return decode_timestamp_response(der)


def failure_of(der: bytes) -> set[str]:
    status = TimeStampResp.load(der)["status"]
    assert status["status"].native == "rejection"
    assert not TimeStampResp.load(der)["time_stamp_token"].native  # a rejection carries no token
    return set(status["fail_info"].native)


def test_a_granted_token_is_accepted_by_rfc3161_client(
    tsa: LocalTsa, http: requests.Session, url: str
) -> None:
    request = build_request()
    answer = decoded(stamp(http, url, request))
    assert verifier(tsa, request).build().verify_message(answer, DATA)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary on this machine")
def test_a_granted_token_is_accepted_by_openssl_ts_verify(
    tsa: LocalTsa, http: requests.Session, url: str, tmp_path: Path
) -> None:
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "answer.tsr").write_bytes(stamp(http, url, build_request()))
    (tmp_path / "root.pem").write_text(tsa.root_pem)
    (tmp_path / "leaf.pem").write_text(tsa.leaf_pem)
    command: list[str | Path] = [
        "openssl",
        "ts",
        "-verify",
        "-data",
        tmp_path / "data",
        "-in",
        tmp_path / "answer.tsr",
    ]
    command += ["-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "leaf.pem"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout


def test_the_request_nonce_is_echoed(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    request = build_request()
    assert request.nonce is not None
    assert decoded(stamp(http, url, request)).tst_info.nonce == request.nonce


def test_the_request_message_imprint_is_echoed(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    imprint = decoded(stamp(http, url, build_request())).tst_info.message_imprint
    assert imprint.hash_algorithm.dotted_string == "2.16.840.1.101.3.4.2.1"
    assert imprint.message == hashlib.sha256(DATA).digest()


def test_cert_req_true_puts_the_tsa_certificate_in_the_token(
    tsa: LocalTsa, http: requests.Session, url: str
) -> None:
    certificates = decoded(stamp(http, url, build_request(cert_req=True))).signed_data.certificates
    assert certificates == {certificate(tsa.leaf_pem).public_bytes(Encoding.DER)}


def test_cert_req_false_leaves_the_certificates_out_yet_verifies_with_the_tsa_certificate(
    tsa: LocalTsa, http: requests.Session, url: str
) -> None:
    request = build_request(cert_req=False)
    assert request.cert_req is False
    answer = decoded(stamp(http, url, request))
    assert answer.signed_data.certificates == set()
    assert verifier(tsa, request).build().verify_message(answer, DATA)


def test_the_token_names_its_signing_certificate_by_sha256(
    tsa: LocalTsa, http: requests.Session, url: str
) -> None:
    token = tsp.TimeStampResp.load(stamp(http, url, build_request()))["time_stamp_token"]
    signer_info = token["content"]["signer_infos"][0]
    attributes = {attr["type"].native: attr["values"][0] for attr in signer_info["signed_attrs"]}
    ess = attributes["signing_certificate_v2"]["certs"][0]  # RFC 5035 ESSCertIDv2
    leaf = certificate(tsa.leaf_pem)
    assert ess["cert_hash"].native == hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest()
    assert ess["issuer_serial"]["serial_number"].native == leaf.serial_number
    assert attributes["content_type"].native == "tst_info"
    assert signer_info["sid"].chosen["serial_number"].native == leaf.serial_number
    assert isinstance(token["content"], cms.SignedData)


def test_a_wrong_imprint_is_refused_by_the_verifier(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    tsa.wrong_imprint = True
    request = build_request()
    answer = decoded(stamp(http, url, request))
    with pytest.raises(VerificationError, match="Mismatch between messages"):
        verifier(tsa, request).build().verify_message(answer, DATA)


def test_a_wrong_nonce_is_refused_by_the_verifier(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    tsa.wrong_nonce = True
    request = build_request()
    answer = decoded(stamp(http, url, request))
    assert answer.tst_info.nonce == request.nonce + 1  # type: ignore[operator]
    with pytest.raises(VerificationError, match="Nonce mismatch"):
        verifier(tsa, request).build().verify_message(answer, DATA)


def test_garbage_is_not_a_decodable_response(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    tsa.garbage = True
    body = stamp(http, url, build_request())
    with pytest.raises(ValueError):
        decode_timestamp_response(body)


def test_down_answers_503(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    tsa.down = True
    assert post(http, url, build_request().as_bytes()).status_code == 503


def test_delay_seconds_holds_the_answer_back(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    tsa.delay_seconds = 0.3
    started = time.monotonic()
    stamp(http, url, build_request())
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "body",
    [b"", b"not DER at all", build_request().as_bytes()[:-3], build_request().as_bytes() + b"\x00"],
    ids=["empty", "text", "truncated", "trailing-bytes"],
)
def test_a_malformed_request_is_rejected_with_bad_data_format(
    tsa: LocalTsa, http: requests.Session, url: str, body: bytes
) -> None:
    answer = post(http, url, body)
    assert answer.status_code == 200
    assert decoded(answer.content).status == REJECTION
    assert failure_of(answer.content) == {"bad_data_format"}


def test_an_unsupported_hash_algorithm_is_rejected_with_bad_alg(
    tsa: LocalTsa, http: requests.Session, url: str
) -> None:
    sha1_request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha1"},
                "hashed_message": hashlib.sha1(DATA).digest(),
            },
            "nonce": 7,
            "cert_req": True,
        }
    ).dump()
    answer = post(http, url, sha1_request)
    assert decoded(answer.content).status == REJECTION
    assert failure_of(answer.content) == {"bad_alg"}


def test_gen_time_is_now(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    gen_time = decoded(stamp(http, url, build_request())).tst_info.gen_time
    assert abs(gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_gen_time_is_the_given_now_without_a_fraction_and_accuracy_is_one_second(tsa: LocalTsa) -> None:
    now = dt.datetime(2027, 6, 1, 12, 30, 15, 987654, tzinfo=dt.UTC)
    info = decoded(tsa.respond(build_request().as_bytes(), now=now)).tst_info
    assert info.gen_time == now.replace(microsecond=0)
    assert info.accuracy.seconds == 1
    assert info.policy.dotted_string == tsa.policy_oid


def test_serial_numbers_differ_per_token(tsa: LocalTsa) -> None:
    serials = {decoded(tsa.respond(build_request().as_bytes())).tst_info.serial_number for _ in range(3)}
    assert len(serials) == 3


def test_the_signing_certificate_is_a_tsa_certificate_under_the_root(tsa: LocalTsa) -> None:
    leaf, root = certificate(tsa.leaf_pem), certificate(tsa.root_pem)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical  # RFC 3161 §2.3
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(root)
    assert (
        dt.timedelta(days=364)
        < leaf.not_valid_after_utc - leaf.not_valid_before_utc
        <= dt.timedelta(days=366)
    )


def test_the_certificates_are_created_once_and_reloaded(tsa: LocalTsa, tsa_dir: Path) -> None:
    again = LocalTsa(tsa_dir)
    assert (again.root_pem, again.leaf_pem) == (tsa.root_pem, tsa.leaf_pem)
    assert again.chain_pem == tsa.leaf_pem + tsa.root_pem


def test_certchain_serves_the_pem_chain_leaf_first(
    tsa: LocalTsa, http: requests.Session, served: tuple[LocalTsa, str]
) -> None:
    answer = http.get(served[1] + "/api/v1/timestamp/certchain", timeout=5)
    assert answer.status_code == 200
    chain = x509.load_pem_x509_certificates(answer.content)
    assert chain == [certificate(tsa.leaf_pem), certificate(tsa.root_pem)]


def test_other_paths_answer_404(tsa: LocalTsa, http: requests.Session, served: tuple[LocalTsa, str]) -> None:
    assert post(http, served[1] + "/timestamp", build_request().as_bytes()).status_code == 404
    assert http.get(served[1] + "/api/v1/timestamp/other", timeout=5).status_code == 404


def test_a_wrong_content_type_answers_415(tsa: LocalTsa, http: requests.Session, url: str) -> None:
    answer = http.post(
        url, data=build_request().as_bytes(), headers={"Content-Type": "application/json"}, timeout=5
    )
    assert answer.status_code == 415


def test_a_request_for_another_policy_is_rejected_with_unaccepted_policy(tsa: LocalTsa) -> None:
    request = tsp.TimeStampReq.load(build_request().as_bytes())
    other = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": request["message_imprint"].copy(),
            "req_policy": "1.3.6.1.4.1.99999.1",
            "nonce": request["nonce"].native,
        }
    ).dump()
    assert failure_of(tsa.respond(other)) == {"unaccepted_policy"}
