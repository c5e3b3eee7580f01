#!/usr/bin/env bash
# Regenerates include/luaengine.h from src/ffi/ with the pinned cbindgen. Never edit the header.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cbindgen --quiet --config cbindgen.toml --crate luaengine --output include/luaengine.h
