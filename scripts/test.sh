#!/usr/bin/env bash
# Runs every test: Rust (unit, integration, doc) on both Lua backends, the C ABI tests, the
# header check and the examples under ctest for both backends, and the Go tests.
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

if [ -f go-bindings/go.mod ]; then
  step "go vet and go test -race"
  (cd go-bindings && go vet ./... && go test -race ./...)
fi

step "all tests passed"
