# Two commands: `make demo` and `make test`. Each installs what it needs into
# .venv (and system libraries with apt-get when missing) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
TEST_STAMP := $(VENV)/.test-sysdeps

.PHONY: demo test bench install clean sysdeps gramine-manifest

$(STAMP): pyproject.toml scripts/sysdeps.sh
	./scripts/sysdeps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# What only the tests use (Electrum, Chromium, litecoind), not `make demo`: see scripts/sysdeps.sh --test
$(TEST_STAMP): $(STAMP) scripts/sysdeps.sh
	./scripts/sysdeps.sh --test
	touch $(TEST_STAMP)

# litecoind (optional), the real Bitcoin-family node the demo runs for LTC-REG when it is installed
CHAINS_STAMP := $(VENV)/.chains
$(CHAINS_STAMP): $(STAMP) scripts/sysdeps.sh
	./scripts/sysdeps.sh --chains
	touch $(CHAINS_STAMP)

# anvil (a real EVM node, from npm) for the Ethereum-like ledger tests and the demo's ETH-DEV
ANVIL := .tools/node_modules/.bin/anvil
$(ANVIL): scripts/anvil.sh
	./scripts/anvil.sh

# a js-libp2p gossipsub node (pinned npm packages) for the interop test, tests/interop/
JSLIBP2P := .tools/jslibp2p/node_modules/.keyswitch-lock
$(JSLIBP2P): scripts/jslibp2p.sh tests/interop/jsnode/package-lock.json
	./scripts/jslibp2p.sh

install: $(STAMP) $(TEST_STAMP) $(ANVIL) $(JSLIBP2P)

# the demo runs ETH-DEV on anvil and LTC-REG on litecoind when they could be installed, else on the dev ledger
demo: $(STAMP) $(CHAINS_STAMP) $(ANVIL)
	$(PY) -m node demo

# Functional tests wait on polled conditions; on a loaded 2-core CI machine give
# them 3x the time (they return as soon as the condition holds).
KS_TIMEOUT_FACTOR ?= 3
export KS_TIMEOUT_FACTOR

# --durations=25: every run ends with its 25 slowest steps, so a CI log shows where the time goes (issue #22).
# Two pytest-xdist workers, one test file at a time each, the longest files handed out first (tests/conftest.py):
# most of the suite's time is daemons starting and polled waits, not both cores busy (docs/testing.md).
# `make test XDIST=` runs it serially.
XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder
test: $(STAMP) $(TEST_STAMP) $(ANVIL) $(JSLIBP2P)
	$(PY) -m pytest -q --durations=25 $(XDIST) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

# Render the Gramine (SGX) manifest for the enclave process into $(GRAMINE_OUT); where
# gramine-manifest and gramine-sgx-sign are installed, also build and sign it. Without
# them it says what is missing and exits non-zero. Uses the venv's Python if present
# (its interpreter and site-packages become trusted files).
GRAMINE_OUT ?= build/gramine
GRAMINE_ARGS ?=
GRAMINE_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gramine-manifest:
	$(GRAMINE_PY) -m node.tee.gramine --out $(GRAMINE_OUT) $(GRAMINE_ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .hypothesis .demo
