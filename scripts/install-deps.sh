#!/usr/bin/env bash
# Installs the Debian 12 packages apikey needs to build, run and test, unless they are
# all there already (so `make test` / `make run` stay fast on a prepared machine).
# --force: update the package lists and install even if everything looks present.
set -euo pipefail

packages=(
    build-essential
    nginx-core nginx-dev libpcre2-dev zlib1g-dev libssl-dev   # module build
    liblmdb-dev lmdb-utils
    libyaml-cpp-dev libboost-dev libboost-test-dev nlohmann-json3-dev
    curl openssl                                               # TLS tests: openssl req
    wrk libbenchmark-dev                                       # make bench
    clang-14 libclang-rt-14-dev                                # make fuzz (libFuzzer)
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ "${1:-}" != --force ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
echo "installing: ${missing[*]:-${packages[*]}}"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${packages[@]}"
