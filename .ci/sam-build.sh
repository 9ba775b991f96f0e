#!/usr/bin/env bash
# sam build into .aws-sam/ (functions and CommonLayer; python3.12, x86_64).
# The python3.12 workflow needs a python3.12 on PATH: pyenv's is preferred when present.
set -euo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
PYENV_312="/root/.pyenv/versions/3.12.1/bin"
if [[ -x "$PYENV_312/python3.12" ]]; then
  export PATH="$PYENV_312:$PATH"
fi
command -v python3.12 >/dev/null || { echo "sam-build: python3.12 not on PATH" >&2; exit 2; }

[[ -x .venv-sam/bin/sam ]] || .ci/sam-venv.sh
exec .venv-sam/bin/sam build --template-file template.yaml --build-dir .aws-sam/build "$@"
