#!/usr/bin/env bash
# Checks `ssd export onnx` against two deployment runtimes, ONNX Runtime and OpenVINO (from
# PyPI, in this folder's own venv): every exported model's raw outputs must equal ssd's within
# 1e-4 relative, and its in-graph detections must equal ssd's as sets, at batch 1 and at a
# larger batch. See README.md here for what is compared and how.
#
#   tools/onnx-check/run.sh            # uses .build/release/ssd (builds it if missing)
#   SSD=/path/to/ssd tools/onnx-check/run.sh
#   ONNX_CHECK_MODELS="compact ssd300" tools/onnx-check/run.sh   # a subset (default: all)
#
# Models: the trained compact model shipped in models/ on samples/*.jpg, and ssd300, ssd512 and
# ssdlite320 trained for one iteration on a tiny synthetic set (their weights are near their
# random initialisation) on seeded noise images. Exits non-zero on the first failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
ssd="${SSD:-$root/.build/release/ssd}"
models="${ONNX_CHECK_MODELS:-compact ssd300 ssdlite320 ssd512}"
start=$SECONDS

# 1. The venv, created once and reinstalled when requirements.txt changes.
"$root/tools/make-venv.sh" "$venv" "$here/requirements.txt"
python="$venv/bin/python"
echo "== onnx-check: venv ready after $((SECONDS - start)) s =="

# 2. ssd.
if [ ! -x "$ssd" ]; then
  (cd "$root" && swift build -c release --product ssd)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check() { "$python" "$here/check.py" "$@"; }
export_onnx() { "$ssd" export onnx --overwrite "$@"; }

# 3. Weights near their initialisation for the models nothing ships: one training iteration
#    on a tiny synthetic set (ssd demo makes the set; its compact run is not used).
needs_data=false
for m in $models; do [ "$m" != compact ] && needs_data=true; done
if $needs_data; then
  "$ssd" demo --output "$work/demo" --train-images 8 --test-images 1 --iterations 1 --batch-size 8 --samples 1 \
    --overwrite >/dev/null 2>&1
  "$python" "$here/noise_png.py" "$work/noise" 3 320
fi
weights_for() {
  "$ssd" train --model "$1" --data "$work/demo/data/lists" --iterations 1 --batch-size 1 --workers 1 \
    --output "$work/runs/$1" --overwrite >/dev/null
  echo "$work/runs/$1/checkpoint.safetensors"
}

for m in $models; do
  echo "== onnx-check: $m =="
  case "$m" in
    compact)
      w="$root/models/shapes-compact.safetensors"
      images=("$root"/samples/*.jpg)
      export_onnx --weights "$w" -o "$work/compact.onnx" --write-sample "$work/compact-raw.safetensors" "${images[@]}"
      check "$work/compact.onnx" "$work/compact-raw.safetensors"
      export_onnx --weights "$w" -o "$work/compact-pp.onnx" --with-postprocess --write-sample "$work/compact-pp.safetensors" "${images[@]}"
      check "$work/compact-pp.onnx" "$work/compact-pp.safetensors"
      # The evaluation threshold and a small top k: many candidates, much suppression, the per-image cut.
      export_onnx --weights "$w" -o "$work/compact-pp2.onnx" --with-postprocess --min-score 0.01 --top-k 20 \
        --write-sample "$work/compact-pp2.safetensors" "${images[@]}"
      check "$work/compact-pp2.onnx" "$work/compact-pp2.safetensors"
      # Nothing above the threshold: every output empty (D = 0), in both runtimes.
      export_onnx --weights "$w" -o "$work/compact-pp3.onnx" --with-postprocess --min-score 0.9999 \
        --write-sample "$work/compact-pp3.safetensors" "${images[@]}"
      check "$work/compact-pp3.onnx" "$work/compact-pp3.safetensors"
      ;;
    ssd300|ssd512)
      w="$(weights_for "$m")"
      export_onnx --weights "$w" -o "$work/$m.onnx" --with-postprocess --min-score 0.05 \
        --write-sample "$work/$m.safetensors" "$work"/noise/*.png
      check "$work/$m.onnx" "$work/$m.safetensors"
      ;;
    ssdlite320)
      # torchvision's head initialisation gives every score ≈ 1/classes (ties everywhere):
      # spread them by scaling the class heads' last weights.
      w="$(weights_for "$m")"
      "$python" "$here/spread_scores.py" "$w" "$work/ssdlite320-spread.safetensors" 10000
      export_onnx --weights "$work/ssdlite320-spread.safetensors" -o "$work/$m.onnx" --with-postprocess \
        --write-sample "$work/$m.safetensors" "$work"/noise/*.png
      check "$work/$m.onnx" "$work/$m.safetensors"
      ;;
    *) echo "onnx-check: unknown model $m (compact, ssd300, ssd512, ssdlite320)" >&2; exit 2 ;;
  esac
done
echo "== onnx-check: all passed in $((SECONDS - start)) s =="
