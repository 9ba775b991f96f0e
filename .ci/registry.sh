#!/usr/bin/env bash
# Make Debian's docker-registry (distribution 2.8) and skopeo available for the release tests
# (spec §10): the tests run their own registry on 127.0.0.1 and push to it with skopeo.
# Idempotent: does nothing when both commands exist. Prints one line saying what it did.
# The packaged service would listen on all interfaces (:5000), so it is never left running.
set -euo pipefail

started=$EPOCHREALTIME
elapsed() { awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

if command -v docker-registry >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1; then
  echo "registry.sh: docker-registry and skopeo already installed ($(elapsed))"
  exit 0
fi

if [[ $EUID -ne 0 ]]; then
  echo "registry.sh: docker-registry/skopeo missing; run as root to install them" >&2
  exit 2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry skopeo; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  echo "registry.sh: apt-get install docker-registry skopeo failed" >&2
  exit 1
fi

# Where an init system honoured the postinst's start request, stop and disable that service.
stopped=""
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now --quiet docker-registry && stopped=" (stopped the packaged service)"
elif [[ -x /etc/init.d/docker-registry ]] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 && stopped=" (stopped the packaged service)"
  update-rc.d docker-registry disable >/dev/null 2>&1 || true
fi

echo "registry.sh: installed docker-registry $(dpkg-query -W -f='${Version}' docker-registry)" \
  "and skopeo $(dpkg-query -W -f='${Version}' skopeo)${stopped} ($(elapsed))"
