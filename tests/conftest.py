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


# ------------------------------------------------------------------ processes: the functional framework
import pytest  # noqa: E402

from tests.functional.framework import Network  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell whether its test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def network(request, tmp_path):
    """The processes of one test (``tests/functional/framework.py``): stopped when the test ends; a failed
    test prints each one's log tail. Set the libp2p network name with ``network.net = "..."``
    before adding a daemon."""
    net = Network(tmp_path)
    try:
        yield net
    finally:
        rep = getattr(request.node, "rep_call", None)
        net.close(failed=rep is None or rep.failed)


# ------------------------------------------------------------------ order: the longest files first
# On pytest-xdist workers, one file per worker at a time (`--dist loadfile --no-loadscope-reorder`), files are
# handed out in collection order (without --no-loadscope-reorder xdist hands out the files with the most tests
# first, which puts these few-test, long files last): a long file handed out last would end the run alone. These ran longest (docs/testing.md,
# "Where the time goes"); the order inside a file, and of every other file, is kept.
LONGEST_FIRST = (
    "tests/simulations/test_fidelity.py", "tests/simulations/test_contracts.py", "tests/interop/test_js_gossip.py",
    "tests/test_benchmark_soak.py",
    "tests/functional/test_holds.py", "tests/runtime/test_gossip_health.py",
    "tests/functional/test_request_contracts.py", "tests/functional/test_request_restart.py",
    "tests/functional/test_switchboard.py", "tests/faults/test_faults.py", "tests/daemon/test_daemon.py",
    "tests/functional/test_offers_network.py", "tests/functional/test_network.py", "tests/test_demo.py",
    "tests/test_benchmark_network.py", "tests/cli/test_operator_mistakes.py", "tests/functional/test_key_escrow.py",
    "tests/functional/test_claim_keep.py", "tests/functional/test_request_options.py",
    "tests/functional/test_offers_pull.py", "tests/daemon/test_dev.py", "tests/cli/test_operator_commands.py",
)


def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "numprocesses", None):  # a serial run (make test) keeps the collection order
        return
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
