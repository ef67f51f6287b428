#!/usr/bin/env bash
# Builds and runs a libFuzzer target over the parsers of untrusted files.
#   fuzz/run.sh [unpickler|zip|torchfile|safetensors|voc|datalists|annotations|all] [runs]   (default: all, 1000000)
#
# "Ship what is fuzzed": every target compiles the package's own sources with the release
# settings of Package.swift (-O, whole-module, checks on), plus -sanitize=fuzzer,address:
#   - unpickler, zip, torchfile: every Sources/SSDInterop file that needs only Foundation and
#     zlib (files importing SSDEngine/SSDLayers are the conversions, not the readers), -lz;
#   - safetensors: Sources/SSDLayers/Safetensors.swift with Sources/SSDEngine/Tensor.swift as
#     one module (the cross-module import dropped);
#   - voc, datalists, annotations (COCO and Create ML files): the SSDEngine, SSDBoxes and SSDData modules built whole, unmodified, as static
#     libraries (their C dependencies: oneDNN, libjpeg-turbo, libpng, the CWinograd object),
#     and the harness importing SSDData like any client. Nothing is copied or edited, so the
#     harness rebuilds against whatever SSDData holds.
# Any single allocation over 2 GiB is a failure; SSD_FUZZ_RSS_MB raises the total RSS limit
# (default 2048) for targets whose toolchain leaks are suppressed but still take memory
# (datalists: Foundation's JSONSerialization leaks its input on every parse error, about 2 KB an
# execution, see lsan.supp; the 1M-execution campaign peaked near 3 GB, so use 4096).
# Each run seeds a corpus from ../shared/fixtures (or $SSD_FIXTURES), the repository's files
# and fuzz/seeds/<target>, and runs `runs` executions. Crashes are written to
# fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
target="${1:-all}"
runs="${2:-1000000}"
fixtures="${SSD_FIXTURES:-$(dirname "$repo")/shared/fixtures}"
# The package sources to fuzz (default: this checkout's); e.g. SSD_SOURCES=/other/checkout/Sources
# fuzzes another version of the same files without copying them here.
sources_root="${SSD_SOURCES:-$repo/Sources}"
work="$here/.build"
mkdir -p "$work"
# The release settings (Package.swift: plain -O, whole-module) and the sanitizers.
flags=(-O -wmo -parse-as-library -sanitize=fuzzer,address)
data_built=0

quiet() { grep -v "Cannot export local symbol" >&2 || true; }

# SSDFiles (the regular-file check every reader makes) as a static library with its module.
files_built=0
build_files_module() {
    [ "$files_built" = 0 ] || return 0
    mkdir -p "$work/modules"
    echo "== building module SSDFiles" >&2
    swiftc "${flags[@]}" -module-name SSDFiles -emit-library -static -emit-module -emit-module-path "$work/modules/SSDFiles.swiftmodule" \
        "$sources_root"/SSDFiles/*.swift -o "$work/libSSDFiles.a" 2>&1 | quiet
    [ -f "$work/libSSDFiles.a" ] || { echo "build of SSDFiles failed" >&2; exit 1; }
    files_built=1
}

# SSDEngine then SSDData as static libraries with their modules, as SwiftPM builds them.
build_data_modules() {
    local mods="$work/modules"
    build_files_module
    mkdir -p "$mods" "$work/cwinograd"
    printf 'module CWinograd {\n    umbrella header "%s"\n    export *\n}\n' \
        "$sources_root/CWinograd/include/CWinograd.h" > "$work/cwinograd/module.modulemap"
    clang -O2 -fPIC -fsanitize=fuzzer-no-link,address -I "$sources_root/CWinograd/include" \
        -c "$sources_root/CWinograd/winograd_avx2.c" -o "$work/cwinograd/winograd_avx2.o"
    echo "== building module SSDEngine" >&2
    swiftc "${flags[@]}" -module-name SSDEngine -emit-library -static -emit-module -emit-module-path "$mods/SSDEngine.swiftmodule" \
        -I "$sources_root/CDNNL" -I "$work/cwinograd" "$sources_root"/SSDEngine/*.swift -o "$work/libSSDEngine.a" 2>&1 | quiet
    echo "== building module SSDBoxes" >&2
    swiftc "${flags[@]}" -module-name SSDBoxes -emit-library -static -emit-module -emit-module-path "$mods/SSDBoxes.swiftmodule" \
        "$sources_root"/SSDBoxes/*.swift -o "$work/libSSDBoxes.a" 2>&1 | quiet
    echo "== building module SSDData" >&2
    swiftc "${flags[@]}" -module-name SSDData -emit-library -static -emit-module -emit-module-path "$mods/SSDData.swiftmodule" \
        -I "$mods" -I "$sources_root/CDNNL" -I "$work/cwinograd" -I "$sources_root/CTurboJPEG" -I "$sources_root/CPNG" \
        -I "$sources_root/CLibXML2" $(pkg-config --cflags libxml-2.0 | sed 's/-I/-Xcc -I/g') \
        "$sources_root"/SSDData/*.swift -o "$work/libSSDData.a" 2>&1 | quiet
    [ -f "$work/libSSDEngine.a" ] && [ -f "$work/libSSDBoxes.a" ] && [ -f "$work/libSSDData.a" ] \
        || { echo "build of SSDEngine/SSDBoxes/SSDData failed" >&2; exit 1; }
}

build() {
    local name="$1"
    local out="$work/$name"
    local sources=("$here/targets/$name.swift")
    local extra=()
    rm -f "$out"
    case "$name" in
        safetensors)
            # Safetensors.swift and Tensor.swift compiled as one module: drop the cross-module import.
            mkdir -p "$work/src-safetensors"
            sed '/^import SSDEngine$/d' "$sources_root/SSDLayers/Safetensors.swift" > "$work/src-safetensors/Safetensors.swift"
            cp "$sources_root/SSDEngine/Tensor.swift" "$work/src-safetensors/Tensor.swift"
            sources+=("$work/src-safetensors/Safetensors.swift" "$work/src-safetensors/Tensor.swift")
            build_files_module
            extra=(-I "$work/modules" "$work/libSSDFiles.a") ;;
        voc|datalists|annotations)
            # Built once per invocation, from the current sources.
            if [ "$data_built" = 0 ]; then build_data_modules; data_built=1; fi
            extra=(-I "$work/modules" -I "$sources_root/CDNNL" -I "$work/cwinograd" -I "$sources_root/CTurboJPEG"
                   -I "$sources_root/CPNG" -I "$sources_root/CLibXML2" $(pkg-config --cflags libxml-2.0 | sed 's/-I/-Xcc -I/g')
                   "$work/libSSDData.a" "$work/libSSDEngine.a" "$work/libSSDBoxes.a" "$work/libSSDFiles.a" "$work/cwinograd/winograd_avx2.o"
                   -ldnnl -lturbojpeg -lpng16 -lxml2) ;;
        *)
            for f in "$sources_root"/SSDInterop/*.swift; do
                grep -qE '^import (SSDEngine|SSDLayers)$' "$f" || sources+=("$f")
            done
            build_files_module
            extra=(-I "$sources_root/CZlib" -I "$work/modules" "$work/libSSDFiles.a" -lz) ;;
    esac
    echo "== building $name" >&2
    swiftc "${flags[@]}" -module-name "Fuzz_$name" "${sources[@]}" "${extra[@]}" -o "$out" 2>&1 | quiet
    [ -x "$out" ] || { echo "build of $name failed" >&2; exit 1; }
}

seed() {
    local name="$1" corpus="$here/corpus/$1" interop="$fixtures/torch_interop"
    mkdir -p "$corpus"
    case "$name" in
        unpickler)
            if [ -d "$interop" ]; then
                for f in "$interop"/*zip*.pth*; do
                    unzip -p "$f" '*/data.pkl' > "$corpus/$(basename "$f").data.pkl" 2>/dev/null || true
                done
                cp "$interop"/state_dict_legacy.pth "$interop"/tutorial_style_checkpoint.pth.tar "$corpus/"
            fi ;;
        zip) if [ -d "$interop" ]; then cp "$interop"/*zip*.pth* "$corpus/"; fi ;;
        torchfile) if [ -d "$interop" ]; then cp "$interop"/*.pth* "$corpus/"; fi ;;
        safetensors) if [ -d "$interop" ]; then cp "$interop"/*.safetensors "$corpus/"; fi ;;
        voc)
            # Annotations of a synthetic demo set, if one was generated here.
            { find "$repo/demo-output" -name '*.xml' 2>/dev/null || true; } | head -50 | while read -r f; do cp "$f" "$corpus/"; done ;;
    esac
    # Seeds kept in the repository (DEFLATE archives, annotations, data lists).
    if [ -d "$here/seeds/$name" ]; then cp "$here/seeds/$name"/* "$corpus/"; fi
    chmod u+w "$corpus"/* 2>/dev/null || true
}

# Replays every input of fuzz/regressions/<target>/ (crashes found earlier, kept as tests):
# any crash fails the run before fuzzing starts.
replay() {
    local name="$1" dir="$here/regressions/$1"
    [ -d "$dir" ] || return 0
    echo "== replaying $(ls "$dir" | wc -l) regression inputs of $name" >&2
    for input in "$dir"/*; do
        if ! env LSAN_OPTIONS="suppressions=$here/lsan.supp" SWIFT_BACKTRACE=enable=no \
                "$work/$name" "$input" >"$work/replay.log" 2>&1; then
            echo "REGRESSION: $input crashes the $name harness (log: $work/replay.log)" >&2
            [ "${SSD_FUZZ_KNOWN_REGRESSIONS:-0}" = 1 ] || return 1
            echo "   (known, not fixed yet: continuing as SSD_FUZZ_KNOWN_REGRESSIONS=1 asks)" >&2
        fi
    done
}

run() {
    local name="$1"
    build "$name"
    replay "$name"
    seed "$name"
    mkdir -p "$here/artifacts/$name"
    echo "== running $name for $runs executions" >&2
    LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    "$work/$name" -runs="$runs" -max_len=65536 -rss_limit_mb="${SSD_FUZZ_RSS_MB:-2048}" -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$name/" "$here/corpus/$name"
}

if [ "$target" = all ]; then
    for t in unpickler zip torchfile safetensors voc datalists annotations; do run "$t"; done
else
    run "$target"
fi
