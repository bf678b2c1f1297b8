#!/usr/bin/env bash
# Installs the system packages Keyswitch needs, only when they are missing.
# Debian/Ubuntu (apt-get). Run as root, or with sudo available.
set -euo pipefail

need=()
# py-libp2p depends on fastecdsa, which compiles against GMP.
[ -e /usr/include/gmp.h ] || [ -e /usr/include/x86_64-linux-gnu/gmp.h ] || [ -e /usr/include/aarch64-linux-gnu/gmp.h ] || need+=(libgmp-dev)
command -v gcc >/dev/null || need+=(build-essential)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
for extra in "$@"; do
  dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "sysdeps: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# Electrum (Debian's package) for the test that restores our exported keys in a
# real wallet. Optional: if it cannot be installed, that test is skipped with a reason.
if ! command -v electrum >/dev/null; then
  echo "sysdeps: installing electrum (optional, for the wallet cross-check)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      electrum >/dev/null; } || echo "sysdeps: electrum not installed; the Electrum cross-check will be skipped" >&2
fi

# litecoind (Debian's Litecoin Core, a Bitcoin Core fork) for the Bitcoin Core JSON-RPC ledger tests
# (tests/ledger/test_bitcoind.py, started on regtest by node.localnet.start_litecoind), as anvil is for
# the EVM ones. Optional: if it cannot be installed, those tests are skipped with the reason.
if ! command -v litecoind >/dev/null; then
  echo "sysdeps: installing litecoind (optional, a real Bitcoin-family node for the ledger tests)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      litecoind >/dev/null; } || echo "sysdeps: litecoind not installed; the litecoind ledger tests will be skipped" >&2
fi
