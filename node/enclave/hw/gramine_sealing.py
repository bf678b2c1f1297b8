"""The enclave's sealed state on Gramine's encrypted-files mount.

The manifest mounts ``SEALED_PATH`` as ``type = "encrypted"`` with
``key_name = "_sgx_mrenclave"``: Gramine encrypts and authenticates every file
under it with a key the CPU derives for this MRENCLAVE on this platform, so
the host sees only ciphertext and another build cannot open it.

On that mount the enclave keeps the same ``SealedStore`` as the simulated
backend (so the same crash-safety and counter logic runs). Its AES key is
derived from a random secret *also stored on the encrypted mount*: Gramine
warns against using its sealing key for the application's own crypto, so the
application never sees that key, only files it protects.

Not covered: Gramine's encrypted files do not stop the host from replacing
the whole mount with an older copy (rollback) across restarts. The counter
file lives on the same mount, so it does not help against that either; a
hardware monotonic counter or a network-side freshness check is needed.
"""

from __future__ import annotations

from pathlib import Path

from node.enclave.sealed import SealedStateError, SealedStore, sim_sealing_key

SEALED_PATH = "/keyswitch/sealed"


class GramineSealing:
    """Opens the sealed store under the encrypted mount (its path a parameter for tests)."""

    def __init__(self, mount_path: Path | str = SEALED_PATH) -> None:
        self.mount_path = Path(mount_path)

    def open_store(self) -> SealedStore:
        if not self.mount_path.is_dir():
            raise SealedStateError(
                f"encrypted mount {self.mount_path} is missing: is the enclave running under gramine-sgx with "
                "the Keyswitch manifest (fs.mounts type \"encrypted\")?")
        # sim_sealing_key: HKDF over a 32-byte secret file created on first use, here on the encrypted mount
        return SealedStore(self.mount_path, sim_sealing_key(self.mount_path))
