import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ks(d, *a):
    return subprocess.run([sys.executable, "-m", "node", "--datadir", str(d), *a], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_quote_then_verify_with_its_binding_and_refusals(tmp_path):
    d = tmp_path / "n"
    assert ks(d, "init").returncode == 0
    assert ks(d, "vault", "new", "--keys", "2").returncode == 0
    q = tmp_path / "q.bin"
    out = ks(d, "attest", "quote", "--out", str(q))
    assert out.returncode == 0, out.stderr
    ok = ks(d, "attest", "verify", str(q))  # picks up q.bin.binding.json
    assert ok.returncode == 0 and ok.stdout.startswith("TRUSTED") and "SIMULATED TEE: INSECURE" in ok.stdout
    side = Path(str(q) + ".binding.json")
    text = side.read_text()
    side.write_text(text.replace('"net": "dev"', '"net": "other"'))
    wrong = ks(d, "attest", "verify", str(q))
    assert wrong.returncode != 0 and "binding-mismatch" in wrong.stdout
    side.unlink()
    raw = bytearray(q.read_bytes())
    raw[-5] ^= 1
    q.write_bytes(bytes(raw))
    bad = ks(d, "attest", "verify", str(q))
    assert bad.returncode == 4 and bad.stdout.startswith("REFUSED")
    assert ks(d, "attest", "verify", str(q), "--at", "yesterday").returncode == 2
