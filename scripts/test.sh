#!/usr/bin/env bash
# Runs every test: Rust (unit, integration, doc) on both Lua backends, the C ABI tests, the
# header check and the examples under ctest for both backends (the example servers' hostile
# client, slow client, SIGTERM and soak tests among them), the Go bindings' vet and race tests
# against the release static library, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo test (luajit)"
cargo test --locked
step "cargo test (lua54)"
cargo test --locked --no-default-features --features lua54

for backend in luajit lua54; do
  step "C tests under ctest ($backend)"
  cmake --preset "$backend" >/dev/null
  cmake --build --preset "$backend"
  ctest --preset "$backend"
done

step "cargo build --release (LuaJIT): target/release/libluaengine.a, which the Go bindings link"
cargo build --release --locked
# Go's build cache does not hash the library or include/luaengine.h, only the cgo flags: name
# this build of them in CGO_CFLAGS, so a changed library or header rebuilds the bindings.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DLUAENGINE_BUILD=$(cat target/release/libluaengine.a include/luaengine.h | sha256sum | cut -c1-16)"
# The bindings (with the example server), then the modules kept apart so the bindings never
# depend on fasthttp or gopher-lua. bench's tests check its implementations agree; its
# benchmarks are run by hand (see go-bindings/README.md).
for module in go-bindings go-bindings/fasthttpadapter go-bindings/bench; do
  step "go vet and go test -race ($module)"
  (cd "$module" && go vet ./... && go test -race ./...)
done
# The race detector drops pooled objects at random, so the allocation checks run without it.
step "go test: allocation checks (go-bindings)"
(cd go-bindings && go test -run AllocateNothing .)

# Seconds per target: a smoke test that the targets build and hold; long campaigns are run by
# hand (fuzz/README.md).
step "fuzz smoke (scripts/fuzz.sh)"
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"

step "all tests passed"
