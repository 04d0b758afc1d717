#!/usr/bin/env bash
# Installs the pinned real peers the tests compare a3 against (npm packages
# listed, with exact versions, in tests/peers/package.json and
# package-lock.json) into tests/peers/node_modules. Fast when already
# installed: a stamp holds the SHA-256 of the lock file it was installed
# from. Without node/npm, or when the registry cannot be reached, it says
# so and exits 0: the tests that need the peers then print SKIP.
set -u
cd "$(dirname "$0")/../tests/peers"
stamp=node_modules/.a3-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup_peers: node/npm not found: tests against real peers will be skipped" >&2
    exit 0
fi
echo "setup_peers: installing the pinned peers (npm ci in tests/peers)" >&2
# --omit=optional: node-llama-cpp lists every platform's prebuilt binaries
# as optional; the linux-x64 CPU build is a direct dependency instead.
if npm ci --omit=optional --no-audit --no-fund --loglevel=error >&2; then
    echo "$want" >"$stamp"
else
    echo "setup_peers: npm ci failed: tests against real peers will be skipped" >&2
fi
exit 0
