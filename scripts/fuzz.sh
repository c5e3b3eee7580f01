#!/usr/bin/env bash
# Fuzz smoke: runs every cargo-fuzz target of fuzz/ for N seconds each (default 20), starting
# from the checked-in seeds (fuzz/corpus/<target>). Exits non-zero when a target crashes,
# panics, hangs or leaks; the input that did it is in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds]            every target on LuaJIT
#   FUZZ_BACKEND=lua54 scripts/fuzz.sh   every target on Lua 5.4
#   FUZZ_TARGETS="cjson ngx_re" scripts/fuzz.sh 60
#
# Long campaigns: see fuzz/README.md.
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# What a fresh machine lacks: a nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

features=()
if [ "${FUZZ_BACKEND:-luajit}" = "lua54" ]; then
  features=(--no-default-features --features lua54)
fi
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
# The siteconf target links the system's jansson (scripts/install-deps.sh installs it).
if ! pkg-config --exists jansson 2>/dev/null; then
  echo "fuzz: jansson not found (libjansson-dev): skipping the siteconf target" >&2
  targets="$(echo "$targets" | tr ' ' '\n' | grep -vx siteconf || true)"
fi
# LuaJIT keeps its heap in memory it maps itself, which LeakSanitizer does not scan: Rust
# objects only Lua refers to (mlua's handles) would all read as leaks at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"

for target in $targets; do
  cargo +nightly fuzz build "${features[@]}" "$target"
done

# New inputs go to a scratch corpus made afresh for each run, so that the smoke always takes
# about the same time (a kept corpus grows, slow inputs included); the seeds are only read.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in $targets; do
  work="$scratch/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  extra=()
  # Its C code has no edge coverage under gcc: compared values are what guides the search.
  [ "$target" = siteconf ] && extra=(-use_value_profile=1)
  echo "== fuzz $target for ${seconds}s"
  if ! cargo +nightly fuzz run "${features[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    "${extra[@]}" 2>&1 | tail -n 25; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash in:" $targets
