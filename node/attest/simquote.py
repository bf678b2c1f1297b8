"""Verifier for the simulated backend's quotes (format: ``node.enclave.simformat``).

``verify_sim_quote(blob, policy=..., at=...)`` never raises; every failure is a
``Verdict`` with its own code:

============================  ========  ==============================================
code                          genuine   meaning
============================  ========  ==============================================
``malformed``                 False     not a parseable sim quote (reason says what)
``simulated-not-allowed``     False     the policy does not accept simulated enclaves
``untrusted-root``            False     certified by a root the policy does not trust
``bad-device-cert``           False     the root's signature over the device key fails
``bad-signature``             False     the device's signature over the quote fails
``quote-from-future``         True      timestamp later than ``at`` (+ 5 min skew)
``quote-stale``               True      older than ``policy.max_quote_age`` at ``at``
``debug-not-allowed``         True      a debug enclave (its memory is readable)
``measurement-not-allowed``   True      genuine, but not an allowed Keyswitch build
``ok``                        True      trusted (ok=True)
============================  ========  ==============================================

SIMULATED quotes are INSECURE: the development vendor root's private key
derives from a public constant, so anyone can make one.
"""

from __future__ import annotations

from datetime import datetime, timezone

from node import wire
from node.crypto import verify_digest
from node.enclave.measure import code_measurement, measured_files  # noqa: F401  (re-exported)
from node.enclave.simformat import (  # noqa: F401  (re-exported)
    DEV_VENDOR_SEED,
    SIM_MAGIC,
    SIM_QUOTE_VERSION,
    DeviceCert,
    QuoteBody,
    SimQuote,
    certify_device,
    decode_quote,
    dev_vendor_root_key,
    dev_vendor_root_pubkey,
    device_id_of,
    encode_quote,
    make_quote,
)
from node.attest.verdict import Verdict

VENDOR = "keyswitch-sim"
CLOCK_SKEW = 300.0

#: every code ``verify_sim_quote`` can return
CODES = (
    "ok",
    "malformed",
    "simulated-not-allowed",
    "untrusted-root",
    "bad-device-cert",
    "bad-signature",
    "quote-from-future",
    "quote-stale",
    "debug-not-allowed",
    "measurement-not-allowed",
)


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def verify_sim_quote(blob: bytes, *, policy, at: datetime) -> Verdict:
    verified_at = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()

    def refuse(code: str, reason: str, **kw) -> Verdict:
        return Verdict(ok=False, code=code, reason=reason, vendor=VENDOR, verified_at=verified_at, simulated=True,
                       **({"genuine": False} | kw))

    try:
        q = decode_quote(blob)
    except wire.WireError as exc:
        return refuse("malformed", f"malformed simulated quote: {exc.reason}")
    b = q.body
    facts = dict(
        measurement=b.measurement.hex(),
        debug=b.debug,
        report_data=b.report_data.hex(),
        device_id=device_id_of(b.cert.device_pub).hex(),
        details={"timestamp": b.timestamp, "nonce": b.nonce.hex(), "root": b.cert.root_pub.hex(),
                 "device_pub": b.cert.device_pub.hex()},
    )
    if not policy.allow_simulated:
        return refuse("simulated-not-allowed",
                      "simulated (INSECURE) enclave; this policy accepts only hardware evidence", **facts)
    if b.cert.root_pub.hex() not in policy.sim_vendor_roots:
        return refuse("untrusted-root", f"device certified by untrusted root {b.cert.root_pub.hex()[:16]}...", **facts)
    if not verify_digest(b.cert.root_pub, b.cert.digest(), b.cert.sig):
        return refuse("bad-device-cert", "the vendor root's signature over the device key does not verify", **facts)
    if not verify_digest(b.cert.device_pub, b.digest(), q.sig):
        return refuse("bad-signature", "the device's signature over the quote does not verify", **facts)
    genuine = dict(facts, genuine=True)
    now = _ts(at)
    if b.timestamp > now + CLOCK_SKEW:
        return refuse("quote-from-future", f"quote timestamp {b.timestamp} is after {verified_at}", **genuine)
    if now - b.timestamp > policy.max_quote_age:
        return refuse("quote-stale",
                      f"quote is {now - b.timestamp:.0f} s old, over the policy's {policy.max_quote_age:.0f} s",
                      **genuine)
    if b.debug and not policy.allow_debug:
        return refuse("debug-not-allowed", "debug enclave: its memory and keys are readable by the host", **genuine)
    if not policy.allows_measurement(b.measurement.hex()):
        return refuse("measurement-not-allowed",
                      f"genuine (simulated) quote, but measurement {b.measurement.hex()[:16]}... "
                      "is not an allowed Keyswitch build", allowed_build=False, **genuine)
    return Verdict(ok=True, code="ok", reason="simulated enclave (INSECURE), allowed build", vendor=VENDOR,
                   verified_at=verified_at, simulated=True, allowed_build=True, **genuine)
