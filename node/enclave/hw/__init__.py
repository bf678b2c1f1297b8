"""The hardware quote and sealing providers the enclave process loads: Linux configfs-tsm (TDX, SEV-SNP)
and Gramine's ``/dev/attestation`` and encrypted mount (SGX). Measured with the rest of the enclave."""
