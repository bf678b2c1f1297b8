#!/usr/bin/env bash
# Installs anvil (Foundry's local EVM node) from the npm registry into .tools/,
# pinned, only when missing. Tests that need it find it at .tools/node_modules/.bin/anvil.
set -euo pipefail
VERSION=1.7.1
DEST="$(cd "$(dirname "$0")/.." && pwd)/.tools"
BIN="$DEST/node_modules/.bin/anvil"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "anvil.sh: npm not found; EVM tests will be skipped (install Node.js and npm)" >&2
  exit 0
fi
mkdir -p "$DEST"
npm install --no-audit --no-fund --silent --prefix "$DEST" "@foundry-rs/anvil@$VERSION"
"$BIN" --version | head -1
