#!/usr/bin/env bash
# Installs whichever of the given Debian packages are missing (the benchmark peers and gnuplot),
# without letting their packages start system services: the benchmark starts its own instances.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bench-peers: installing ${missing[*]}" >&2
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 = "do not start services from maintainer scripts"; only if none is there.
guard=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    guard=1
fi
rc=0
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
[ -n "$guard" ] && $sudo rm -f /usr/sbin/policy-rc.d
[ $rc -eq 0 ] || { echo "bench-peers: could not install ${missing[*]}" >&2; exit 1; }
