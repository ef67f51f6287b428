#!/usr/bin/env bash
# tools/make-venv.sh VENV REQUIREMENTS: makes the virtual environment VENV with the pinned
# packages of REQUIREMENTS (from PyPI), or leaves it as it is when it was made from the same
# file. Debian's python3 lacks the venv module without python3-venv: as root, it is installed.
set -euo pipefail
venv="$1" requirements="$2"
if cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null && [ -x "$venv/bin/python" ]; then exit 0; fi
echo "== creating $venv ($(grep -v '^#' "$requirements" | tr '\n' ' '))"
rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
    rm -rf "$venv"
    python3 -m venv "$venv"
  else
    echo "python3 -m venv failed; install python3-venv" >&2
    exit 1
  fi
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$venv/requirements.txt"
