#!/usr/bin/env bash
# Create .venv-sam/ with the pinned AWS SAM CLI in its own virtual environment
# (aws-sam-cli pins its own boto3, which must not meet the project's pins in .venv).
# Idempotent and quiet: does nothing when .venv-sam/bin/sam already reports the pin;
# pip's output is shown only when the install fails.
set -euo pipefail

SAM_CLI_VERSION="1.170.0"
VENV=".venv-sam"
cd "$(dirname "$0")/.."

sam_is_pinned() {
  [[ -x "$VENV/bin/sam" ]] \
    && SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" --version 2>/dev/null | grep -qF "version $SAM_CLI_VERSION"
}

if sam_is_pinned; then
  exit 0
fi

PY=""
for candidate in python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
    PY="$(command -v "$candidate")"
    break
  fi
done
if [[ -z "$PY" ]]; then
  echo "sam-venv: no python3.12 or python3 with venv found" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "$PY" -m venv "$VENV" \
       && "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
       && "$VENV/bin/python" -m pip install --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "sam-venv: installing aws-sam-cli==$SAM_CLI_VERSION into $VENV failed" >&2
  exit 1
fi
sam_is_pinned || { echo "sam-venv: $VENV/bin/sam does not report version $SAM_CLI_VERSION" >&2; exit 1; }
