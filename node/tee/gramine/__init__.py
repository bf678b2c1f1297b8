"""Gramine (Intel SGX) backend: the enclave process under ``gramine-sgx``.

* ``manifest``: renders ``keyswitch-enclave.manifest.template`` (string.Template,
  no Jinja) into a Gramine manifest that runs ``python -m node.enclave
  --backend gramine`` with the Python runtime and the ``node`` package as
  trusted files (so Gramine's MRENCLAVE measures them), sealed state on an
  encrypted mount keyed with Gramine's ``_sgx_mrenclave`` sealing key, and
  ``sgx.remote_attestation = "dcap"``. ``python -m node.tee.gramine`` (``make
  gramine-manifest``) renders it and, where Gramine is installed, builds and
  signs it.
* ``attestation``: quotes through Gramine's ``/dev/attestation`` pseudo-files.
* ``sealing``: the enclave's sealed store on the encrypted mount.

Nothing here needs Gramine to import; only running it does.
"""
