#!/usr/bin/env bash
# Builds and runs a libFuzzer target over the interop parsers.
#   fuzz/run.sh [unpickler|zip|torchfile|safetensors|all] [runs]   (default: all, 1000000)
# Each target compiles the relevant package sources together with its entry point
# (swiftc -sanitize=fuzzer,address, -O so overflow and bounds checks stay on), seeds a corpus
# from ../shared/fixtures (or $SSD_FIXTURES) and fuzz/seeds/<target>, and runs `runs` executions. Crashes are written
# to fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
target="${1:-all}"
runs="${2:-1000000}"
fixtures="${SSD_FIXTURES:-$(dirname "$repo")/shared/fixtures}/torch_interop"
work="$here/.build"
mkdir -p "$work"

interop=(InteropError ZipArchive Inflate PickleValue Unpickler TorchRebuild TorchFile StateDict)

build() {
    local name="$1"; shift
    local out="$work/$name"
    local sources=("$here/targets/$name.swift")
    case "$name" in
        safetensors)
            # Safetensors.swift and Tensor.swift compiled as one module: drop the cross-module import.
            mkdir -p "$work/src-safetensors"
            sed '/^import SSDEngine$/d' "$repo/Sources/SSDLayers/Safetensors.swift" > "$work/src-safetensors/Safetensors.swift"
            cp "$repo/Sources/SSDEngine/Tensor.swift" "$work/src-safetensors/Tensor.swift"
            sources+=("$work/src-safetensors/Safetensors.swift" "$work/src-safetensors/Tensor.swift") ;;
        *)
            for f in "${interop[@]}"; do sources+=("$repo/Sources/SSDInterop/$f.swift"); done ;;
    esac
    echo "== building $name" >&2
    swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "Fuzz_$name" "${sources[@]}" -o "$out" 2>&1 \
        | grep -v "Cannot export local symbol" >&2 || true
    [ -x "$out" ] || { echo "build of $name failed" >&2; exit 1; }
}

seed() {
    local name="$1" corpus="$here/corpus/$1"
    mkdir -p "$corpus"
    [ -d "$fixtures" ] || return 0
    case "$name" in
        unpickler)
            for f in "$fixtures"/*zip*.pth*; do
                unzip -p "$f" '*/data.pkl' > "$corpus/$(basename "$f").data.pkl" 2>/dev/null || true
            done
            cp "$fixtures"/state_dict_legacy.pth "$fixtures"/tutorial_style_checkpoint.pth.tar "$corpus/" ;;
        zip) cp "$fixtures"/*zip*.pth* "$corpus/" ;;
        torchfile) cp "$fixtures"/*.pth* "$corpus/" ;;
        safetensors) cp "$fixtures"/*.safetensors "$corpus/" ;;
    esac
    # Extra seeds kept in the repository (e.g. DEFLATE-compressed archives).
    if [ -d "$here/seeds/$name" ]; then cp "$here/seeds/$name"/* "$corpus/"; fi
    chmod u+w "$corpus"/* 2>/dev/null || true
}

run() {
    local name="$1"
    build "$name"
    seed "$name"
    mkdir -p "$here/artifacts/$name"
    echo "== running $name for $runs executions" >&2
    "$work/$name" -runs="$runs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$name/" "$here/corpus/$name"
}

if [ "$target" = all ]; then
    for t in unpickler zip torchfile safetensors; do run "$t"; done
else
    run "$target"
fi
