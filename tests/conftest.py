"""Test-wide settings.

Hypothesis: under CI (``CI`` set) examples are derandomized, so a run is
replayable and a green CI cannot turn red by luck; elsewhere they vary, to
keep finding new cases, and every failure prints its reproduction blob.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
