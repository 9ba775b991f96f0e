#!/usr/bin/env bash
# Static checks of the deployment: cfn-lint (must print nothing), sam validate --lint,
# statelint on every state machine. Runs all three, exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"   # sam validate wants a region

[[ -x .venv/bin/cfn-lint && -x .venv/bin/statelint ]] || { echo "sam-check: .venv lacks cfn-lint/statelint (pip install -e '.[dev]')" >&2; exit 2; }
[[ -x .venv-sam/bin/sam ]] || .ci/sam-venv.sh || exit 2

status=0
step() {
  local name="$1"; shift
  if ! "$@"; then
    echo "sam-check: $name failed" >&2
    status=1
  fi
}

# cfn-lint must exit 0 and print nothing (no error, no warning).
cfn_lint_silent() {
  local out
  out="$(.venv/bin/cfn-lint template.yaml 2>&1)"; local rc=$?
  [[ -n "$out" ]] && printf '%s\n' "$out"
  [[ $rc -eq 0 && -z "$out" ]]
}

step "cfn-lint" cfn_lint_silent
step "sam validate --lint" .venv-sam/bin/sam validate --lint --template-file template.yaml
step "statelint" .venv/bin/statelint statemachines/*.asl.json
exit "$status"
