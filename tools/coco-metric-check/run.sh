#!/usr/bin/env bash
# Compares `ssd map --metric coco` with pycocotools' COCOeval (see check.py). Not part of the
# build or of `make test`: it needs PyPI once, for its own virtual environment.
#
#   tools/coco-metric-check/run.sh [check.py options]
#
# SSD=path/to/ssd uses that executable; otherwise .build/release/ssd, built when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
"$root/tools/make-venv.sh" "$venv" "$here/requirements.txt"
ssd="${SSD:-$root/.build/release/ssd}"
if [ ! -x "$ssd" ]; then
    (cd "$root" && swift build -c release --product ssd)
fi
exec "$venv/bin/python" "$here/check.py" --ssd "$ssd" "$@"
