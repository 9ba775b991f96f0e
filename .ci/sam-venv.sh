#!/usr/bin/env bash
# Create .venv-sam/ with the pinned AWS SAM CLI, in its own virtual environment
# (aws-sam-cli pins its own boto3, which must not meet the project's pins in .venv).
# Idempotent: does nothing when .venv-sam/bin/sam already reports the pinned version.
set -euo pipefail

SAM_CLI_VERSION="1.170.0"
cd "$(dirname "$0")/.."
VENV=".venv-sam"

if [[ -x "$VENV/bin/sam" ]] \
  && SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" --version 2>/dev/null | grep -qF "version $SAM_CLI_VERSION"; then
  exit 0
fi

PY=""
for candidate in python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv' 2>/dev/null; then
    PY="$(command -v "$candidate")"
    break
  fi
done
if [[ -z "$PY" ]]; then
  echo "sam-venv: no usable python3.12 or python3 found" >&2
  exit 1
fi

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" --version
