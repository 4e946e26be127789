#!/usr/bin/env bash
# Installs, from Debian's packages, what the harness needs from the operating system and this machine lacks:
# PostgreSQL's server programs (initdb, pg_ctl, postgres, pg_dump, psql; the harness starts its own throwaway
# cluster, the packaged service is not used), git and make. Does nothing when all of them are there.
# Used by .ci/run and by make demo.
set -euo pipefail

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql postgresql-contrib)
command -v git >/dev/null || need+=(git)
command -v make >/dev/null || need+=(make)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "[os-packages] installing from Debian's packages: ${need[*]}" >&2
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
