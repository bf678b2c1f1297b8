"""Choosing the TEE backend: ``tee.backend`` = simulated | gramine | configfs.

* ``simulated`` (default): quotes signed by a simulated device key; INSECURE.
* ``gramine``: the enclave process runs under ``gramine-sgx`` (Intel SGX);
  quotes through ``/dev/attestation`` (``node.enclave.hw.gramine_attestation``),
  sealed state on Gramine's encrypted mount.
* ``configfs``: the node runs in a confidential VM (Intel TDX or AMD SEV-SNP);
  quotes through Linux configfs-tsm (``node.enclave.hw.configfs_tsm``).

``make_quote_provider(backend)`` builds the hardware quote provider (None for
``simulated``: the enclave core makes its own simulated quotes). Every
provider has ``kind`` and ``quote(report_data: 64 bytes) -> bytes``.
``missing_hardware(backend)`` says what a machine lacks for a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from node.config import BY_KEY, ConfigError

BACKENDS = ("simulated", "gramine", "configfs")
DEFAULT_BACKEND = "simulated"


@runtime_checkable
class QuoteProvider(Protocol):
    kind: str

    def quote(self, report_data: bytes) -> bytes: ...


def check_backend(name: object, source: str = "") -> str:
    """``name`` if it is a known backend, else ``ConfigError`` naming the choices."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ConfigError("tee.backend", name, f"must be one of {', '.join(BACKENDS)}", source)
    return name


def backend_of(cfg) -> str:
    """The backend a loaded ``node.config.Config`` selects (validated again here)."""
    return check_backend(cfg.get("tee.backend", BY_KEY["tee.backend"].default), cfg.sources.get("tee.backend", ""))


def make_quote_provider(backend: str, *, attestation_dir: Path | str | None = None,
                        tsm_dir: Path | str | None = None, privlevel: int | None = None) -> QuoteProvider | None:
    check_backend(backend)
    if backend == "simulated":
        return None
    if backend == "gramine":
        from node.enclave.hw.gramine_attestation import DEFAULT_BASE, GramineQuoteProvider

        return GramineQuoteProvider(attestation_dir or DEFAULT_BASE)
    from node.enclave.hw.configfs_tsm import DEFAULT_BASE as TSM_BASE, ConfigfsTsm

    return ConfigfsTsm(tsm_dir or TSM_BASE, privlevel=privlevel)


def missing_hardware(backend: str, *, attestation_dir: Path | str | None = None,
                     tsm_dir: Path | str | None = None) -> str | None:
    """None when this machine has what ``backend`` needs, else what is missing."""
    check_backend(backend)
    if backend == "simulated":
        return None
    if backend == "gramine":
        from node.enclave.hw.gramine_attestation import DEFAULT_BASE, missing_reason

        return missing_reason(Path(attestation_dir or DEFAULT_BASE))
    from node.enclave.hw.configfs_tsm import DEFAULT_BASE as TSM_BASE, missing_reason as tsm_missing

    return tsm_missing(Path(tsm_dir or TSM_BASE))
