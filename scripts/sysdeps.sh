#!/usr/bin/env bash
# Installs the system packages Keyswitch needs, only when they are missing.
# Debian/Ubuntu (apt-get). Run as root, or with sudo available.
#
#   scripts/sysdeps.sh            what `make demo` needs (build libraries)
#   scripts/sysdeps.sh --chains   also litecoind (optional), the real Bitcoin-family node `make demo` and
#                                 `keyswitch dev` run for LTC-REG when it is installed
#   scripts/sysdeps.sh --test     also what only the tests use (optional; their tests skip with a reason
#                                 without them): Electrum, for the wallet cross-check; Chromium, for the
#                                 dashboard's headless-browser test; litecoind (Litecoin Core, a Bitcoin Core
#                                 fork), for the Bitcoin Core JSON-RPC ledger tests on regtest
#   SYSDEPS_DRY_RUN=1 scripts/sysdeps.sh [--test]   print what it would consider, install nothing
set -euo pipefail

test_deps=0
chain_deps=0
extras=()
for arg in "$@"; do
  case "$arg" in
    --test) test_deps=1 ;;
    --chains) chain_deps=1 ;;
    *) extras+=("$arg") ;;
  esac
done

if [ -n "${SYSDEPS_DRY_RUN:-}" ]; then
  echo "sysdeps: required libgmp-dev build-essential python3-venv ${extras[*]:-}"
  [ "$test_deps" -eq 1 ] && echo "sysdeps: optional (tests) electrum chromium litecoind"
  [ "$chain_deps" -eq 1 ] && echo "sysdeps: optional (demo) litecoind"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
# py-libp2p depends on fastecdsa, which compiles against GMP.
[ -e /usr/include/gmp.h ] || [ -e /usr/include/x86_64-linux-gnu/gmp.h ] || [ -e /usr/include/aarch64-linux-gnu/gmp.h ] || need+=(libgmp-dev)
command -v gcc >/dev/null || need+=(build-essential)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
for extra in "${extras[@]+"${extras[@]}"}"; do
  dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "sysdeps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

[ "$test_deps" -eq 1 ] || [ "$chain_deps" -eq 1 ] || exit 0

# Optional: if one cannot be installed, its test is skipped with a reason (the demo runs that asset on the
# dev ledger and says so).
# Electrum (Debian's package, tests): the test that restores our exported keys in a real wallet.
# Chromium (Debian's package, tests): the test that loads the dashboard in a headless browser.
# litecoind (Debian's package, tests and the demo): LTC-REG on a real node.
optional=()
if [ "$test_deps" -eq 1 ]; then
  command -v electrum >/dev/null || optional+=(electrum)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || optional+=(chromium)
fi
command -v litecoind >/dev/null || optional+=(litecoind)
for pkg in "${optional[@]+"${optional[@]}"}"; do
  echo "sysdeps: installing $pkg (optional)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "$pkg" >/dev/null; } || echo "sysdeps: $pkg not installed; the tests that need it will be skipped (the demo says so)" >&2
done
