#!/usr/bin/env bash
# Installs the js-libp2p node of the interop test (tests/interop/jsnode: libp2p 2.x,
# @chainsafe/libp2p-gossipsub 14, noise, yamux, tcp, identify, ping) from the npm registry
# into .tools/jslibp2p/, pinned by its package-lock.json (npm ci), only when missing or
# when the lock file changed. Once installed it runs offline. The test finds the modules
# at .tools/jslibp2p/node_modules and skips (saying why) when they are absent.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/tests/interop/jsnode"
DEST="$ROOT/.tools/jslibp2p"
STAMP="$DEST/node_modules/.keyswitch-lock"
if [ -f "$STAMP" ] && cmp -s "$STAMP" "$SRC/package-lock.json"; then
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "jslibp2p.sh: node/npm not found; the js-libp2p interop test will be skipped (install Node.js 20 and npm)" >&2
  exit 0
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "jslibp2p.sh: Node $(node --version) is older than 20; the js-libp2p interop test will be skipped" >&2
  exit 0
fi
mkdir -p "$DEST"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
if ! (cd "$DEST" && npm ci --no-audit --no-fund --silent); then
  echo "jslibp2p.sh: npm ci failed (registry unreachable?); the js-libp2p interop test will be skipped" >&2
  exit 0
fi
cp "$SRC/package-lock.json" "$STAMP"
echo "jslibp2p.sh: js-libp2p $(node -p "require('$DEST/node_modules/libp2p/package.json').version") installed in $DEST"
