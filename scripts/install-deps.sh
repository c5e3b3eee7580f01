#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian machine: system packages through apt
# (only the missing ones), and the pinned cbindgen that generates include/luaengine.h.
# Idempotent and quick when everything is there. CI runs it through scripts/test.sh.
#
#   scripts/install-deps.sh [--openresty]
#
# --openresty also installs Debian's nginx with lua-nginx-module, which only
# bench/openresty-compare needs (the module pulls in the NDK module, lua-resty-core and
# OpenResty's LuaJIT). On a machine that starts services, this starts nginx on port 80.
set -euo pipefail

APT_PACKAGES=(build-essential cmake ninja-build pkg-config valgrind git curl
  libmicrohttpd-dev libjansson-dev libcpp-httplib-dev python3)  # the example servers and their tests
case "${1:-}" in
  "") ;;
  --openresty) APT_PACKAGES+=(nginx-light libnginx-mod-http-lua) ;;
  *) echo "usage: scripts/install-deps.sh [--openresty]" >&2; exit 2 ;;
esac
CBINDGEN_VERSION=0.29.4

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

for tool in cargo go; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is required (Rust via rustup, Go from go.dev)" >&2; exit 1; }
done

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "install-deps: cargo install cbindgen $CBINDGEN_VERSION"
  cargo install --quiet --locked --force cbindgen --version "=$CBINDGEN_VERSION"
fi
