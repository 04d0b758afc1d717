#!/usr/bin/env bash
# Installs the build dependencies on Debian/Ubuntu (as root or with sudo).
# Does nothing when they are already present.
set -eu
pkgs="build-essential pkg-config libopenblas-dev liblapacke-dev libcjson-dev libncurses-dev libpcre2-dev libutf8proc-dev tmux"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing >/dev/null
