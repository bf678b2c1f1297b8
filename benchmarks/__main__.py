"""Run every benchmark: ``python -m benchmarks [name ...]``.

Each ``benchmarks/<name>.py`` is also runnable alone
(``python -m benchmarks.<name>``) and prints its figures beside the anchor it
compares against, measured in the same run.
"""

from __future__ import annotations

import pkgutil
import runpy
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    wanted = argv or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in wanted:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        t0 = time.perf_counter()
        runpy.run_module(f"benchmarks.{name}", run_name="__main__")
        print(f"=== benchmarks.{name}: {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
