#!/usr/bin/env bash
# Debian packages the tests need: the host C++ compiler and the Arm embedded cross-compiler
# (firmware bundles are compiled for a Cortex-M4). Installs only what is missing.
set -euo pipefail
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v arm-none-eabi-g++ >/dev/null || missing+=(gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
else
    sudo=
fi
echo "installing ${missing[*]} (apt-get)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
