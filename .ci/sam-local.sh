#!/usr/bin/env bash
# make sam-local's driver (spec §7, §10; docs/sam-local.md): every function in its Lambda-like
# container with `sam local invoke`, against moto. Installs docker.io/debootstrap when missing,
# starts its own dockerd, builds or loads the cached base image, stops all it started.
# Arguments go to local/sam_local.py (--results FILE, --only NAME, --cache-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "sam-local: run as root (apt-get, dockerd and ip link need it)" >&2
  exit 2
fi
[[ -x .venv/bin/python ]] || { echo "sam-local: .venv is missing (make .venv/.installed, or make test)" >&2; exit 2; }
bash .ci/sam-venv.sh
exec .venv/bin/python -m local.sam_local "$@"
