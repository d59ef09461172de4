#!/bin/sh
# Installs the Debian packages polytask needs to build and test, if any is missing.
# Usage: scripts/deps.sh [build|test|bench]   (default: test)
set -eu
want="cmake make gcc pkg-config libdnnl-dev libopenblas-dev libfyaml-dev libjansson-dev libcjson-dev zlib1g-dev libsqlite3-dev libsodium-dev libmicrohttpd-dev"
case "${1:-test}" in
  build) ;;
  test)  want="$want libcmocka-dev curl" ;;
  fuzz)  want="$want libcmocka-dev clang libclang-rt-dev" ;;
  bench) want="$want libcmocka-dev python3-torch python3-sklearn python3-pandas time wrk curl gunicorn python3-flask" ;;
  ref)   want="$want python3-torch python3-sklearn python3-numpy" ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "polytask: missing Debian packages; run as root:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
echo "polytask: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq $missing >/dev/null
