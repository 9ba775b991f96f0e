"""``signer-client`` speaks to people (spec §7): a refusal prints its title, detail, what to do and the
``Retry-After``; a missing file, an unknown client, a stopped stack are one message and an exit code,
never a traceback; ``-v`` shows headers but never a token, proof or PoE value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _client(stack_file: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.client", "--stack", str(stack_file), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def stack_file(stack: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack))
    return path


def _human(run: subprocess.CompletedProcess[str], exit_code: int, *words: str) -> None:
    assert run.returncode == exit_code, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


def test_a_missing_file_or_a_directory_is_a_message(stack_file: Path, tmp_path: Path) -> None:
    _human(_client(stack_file, "sign", str(tmp_path / "missing.json")), 2, "not a file to sign")
    _human(_client(stack_file, "sign", str(tmp_path)), 2, "not a file to sign")


def test_an_unknown_client_is_a_message(stack_file: Path) -> None:
    _human(
        _client(stack_file, "--client", "nobody", "keys"), 2, "no client certificate 'nobody'", "scanner-1"
    )


def test_a_client_the_authority_does_not_know_is_a_message(stack_file: Path) -> None:
    _human(_client(stack_file, "--client", "intruder", "keys"), 1, "the Authority refused a token")


def test_a_stopped_stack_is_a_message(tmp_path: Path, stack: dict[str, Any]) -> None:
    _human(_client(tmp_path / "nowhere.json", "keys"), 3, "start the local stack first")
    stopped = {**stack, "authority": "https://127.0.0.1:9"}
    (tmp_path / "stopped.json").write_text(json.dumps(stopped))
    _human(_client(tmp_path / "stopped.json", "keys"), 3, "is the local stack running")


def test_a_refusal_says_what_happened_and_what_to_do(stack_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("{}")
    run = _client(stack_file, "sign", str(target), "--predicate-type", "https://example.com/unknown@v1")
    _human(
        run,
        1,
        "signing refused: Unsupported predicate type (400 unsupported_predicate_type)",
        "stella.ops/sbom@v1",
    )


def test_a_throttled_signing_says_when_to_retry(stack_file: Path, tmp_path: Path) -> None:
    """tenant-b's dev plan signs 2 a second: a burst is refused with its Retry-After."""
    target = tmp_path / "report.json"
    target.write_text("{}")
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.client",
                "--stack",
                str(stack_file),
                "--client",
                "scanner-b",
                "sign",
                str(target),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    refused = [err for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode == 1]
    assert refused, "a burst of five was never refused by a plan of 2/s and 1 in flight"
    assert all("retry after:" in err and "what to do: wait" in err for err in refused), refused


def test_quota_and_verbose_headers_show_no_secret(stack_file: Path) -> None:
    run = _client(stack_file, "-v", "quota")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["licenseId"] == "LIC-A-001"
    assert "> GET" in run.stderr and "Authorization: <" in run.stderr and "X-StellaOps-PoE: <" in run.stderr
    assert "eyJ" not in run.stderr  # no JWS value: neither the token, a proof nor the PoE


def test_an_idempotency_key_reused_for_another_body_is_a_clear_conflict(
    stack_file: Path, tmp_path: Path
) -> None:
    """Each run fetches a fresh PoE, so a second run is another body under the same key (spec §5.4)."""
    target = tmp_path / "report.json"
    target.write_text("{}")
    first = _client(stack_file, "--binding", "mtls", "sign", str(target), "--idempotency-key", "people-1")
    assert first.returncode == 0, first.stderr
    again = _client(stack_file, "--binding", "mtls", "sign", str(target), "--idempotency-key", "people-1")
    _human(
        again, 1, "Idempotency conflict (409 idempotency_conflict)", "what to do: use a new Idempotency-Key"
    )


def test_every_option_has_help_text() -> None:
    import argparse

    from local.client import build_parser

    parsers = [build_parser()]
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
                assert all(choice.help for choice in action._choices_actions), parser.prog
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, f"{parser.prog} {action.dest} has no help text"
