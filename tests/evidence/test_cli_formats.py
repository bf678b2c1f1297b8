"""``keyswitch attest verify`` on every vendor format's real sample: detected, verified, exit status."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
T = ROOT.parent / "shared" / "testdata" / "attestation"
pytestmark = pytest.mark.skipif(not T.exists(), reason=f"attestation samples not found at {T}")


def verify(*args):
    r = subprocess.run([sys.executable, "-m", "node", "attest", "verify", "--json", *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else r.stderr)


@pytest.mark.parametrize("args,vendor,code,rc", [
    ([T / "aws-nitro/nitro_attestation.b64", "--at", "2024-09-07T14:37:40Z",
      "--allow-measurement", "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2"
                             "d65710a27aa94ae3949dd54e7c9fe86a"], "aws-nitro", "ok", 0),
    ([T / "aws-nitro/nitro_attestation_debug.b64", "--at", "2024-09-07T14:38:07Z"], "aws-nitro",
     "debug-not-allowed", 3),
    ([T / "amd-sev-snp/attestation.bin", "--collateral", T / "amd-sev-snp/vcek.testcer",
      "--collateral", T / "amd-sev-snp/milan.testcer", "--at", "2023-01-01T00:00:00Z"], "amd-sev-snp",
     "debug-not-allowed", 3),
    ([T / "intel-ias/avr_v5_body_sw_hardening_needed.json", "--signature",
      T / "intel-ias/avr_v5_body_sw_hardening_needed.sig", "--chain", T / "intel-ias/avr_certificates_urlencoded.pem",
      "--at", "2023-09-27T15:52:58Z"], "intel-ias", "debug-not-allowed", 3),
    ([T / "amd-sev-snp/attestation.bin", "--at", "2023-01-01T00:00:00Z"], "amd-sev-snp", "collateral-missing", 4),
])
def test_every_format_through_the_cli(args, vendor, code, rc):
    got_rc, verdict = verify(*args)
    assert isinstance(verdict, dict), verdict
    assert (got_rc, verdict["vendor"], verdict["code"]) == (rc, vendor, code), verdict


def test_ias_needs_both_files():
    r = subprocess.run([sys.executable, "-m", "node", "attest", "verify",
                        str(T / "intel-ias/avr_v5_body_sw_hardening_needed.json"), "--signature",
                        str(T / "intel-ias/avr_v5_body_sw_hardening_needed.sig")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--signature and --chain" in r.stderr
