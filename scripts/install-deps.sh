#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain. Idempotent; run as root
# (CI does) or with sudo. Only Debian packages: nothing is downloaded from elsewhere.
set -euo pipefail

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# unshare and nsenter: the CLI test runs the built-in default in a network namespace.
{ command -v unshare && command -v nsenter; } >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
