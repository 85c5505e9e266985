#!/usr/bin/env bash
# Create or refresh the interop venv (the frameworks the interop tests run; not a
# ckptwatch dependency): $INTEROP_VENV, default .venv-interop, with the command at
# the top of tests/interop/requirements.txt. Does nothing when the venv is there
# and was built from the same requirements.txt by the same python3 (a stamp file);
# otherwise builds it anew (~2 min, ~3.2 GiB; torch comes from $INTEROP_FIND_LINKS,
# default /opt/wheels, the only place with the CPU wheel).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${INTEROP_VENV:-.venv-interop}
REQ=tests/interop/requirements.txt
FIND_LINKS=${INTEROP_FIND_LINKS:-/opt/wheels}
STAMP=$VENV/.requirements.sha256
PYTHON=${PYTHON3:-python3}

want=$({ cat "$REQ"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)

exec 9>"$VENV.lock"      # two builds at once would trample each other
flock 9
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "interop venv $VENV: up to date"
    exit 0
fi
echo "interop venv $VENV: building from $REQ (a few minutes)"
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --find-links "$FIND_LINKS" -r "$REQ"
echo "$want" > "$STAMP"  # last: an interrupted build is rebuilt next time
echo "interop venv $VENV: built in $(( $(date +%s) - start )) s"
