"""The demonstration behind ``make demo`` (see ``node.cli.demo``).

Stages, each on real parts (only the TEE is simulated, and says so):

1. a node's data directory: config and libp2p identity;
2. enrolment: an enclave process generates deposit keys, produces a quote
   binding its keys and the peer id; the quote is verified, and a tampered
   quote, a foreign binding and a non-allowed build are refused;
3. real attestation evidence: the Intel SGX DCAP sample from
   ``../shared/testdata`` verified as of 2025-07-01 (when that verifier is
   present in this build);
4. a network on 127.0.0.1 (``LocalNet``): a dev ledger server (and anvil,
   a real EVM node, for ETH-DEV when it is installed), two bootstrap nodes and five ``keyswitch run`` daemons (alice, bob, carol,
   dave and mallory, whose node runs the BROKEN simulated TEE,
   ``tee.broken = "double-release"``, and says so at start); each funds $50
   deposits (its own quote verified first) and gossips an attested offer
   sheet until every offer book holds every other node's offers;
   When litecoind is installed (``find_litecoind``) it runs too, with a block every second, and every daemon
   serves LTC-REG from it: alice's chunks are then LTC-REG on litecoind instead of BTC-REG on the dev ledger;
5. a swap: alice's BTC-REG (or LTC-REG) chunks for bob's ETH-DEV chunks, agreed over
   /keyswitch/contract/1 and run key by key over /keyswitch/contract-run/1 (the stdlib turns contract); each
   side sweeps what it received (on anvil and litecoind each sweep is read back from the node, with the
   fee it paid) and reports the outcome, which raises the
   other's reputation in its view;
6. an escrow: alice pays carol one chunk once dave, the arbiter, signs "release";
7. an option: bob buys a call on alice's chunk, pays the premium and exercises it;
8. the broken TEE: mallory sells one BTC-REG chunk to carol and to dave
   at once; her enclave releases the key twice (when the second victim's
   funds check comes after the first victim's sweep it refuses the sale,
   nothing is released twice, and mallory tries again with her next chunk); the first victim to sweep
   claims it, the other finds the funds gone and stops before giving
   anything; both outcome reports carry the signed release record each
   received; at every node the two records meet, the proof of cheating is
   assembled and applied at once, one node gossips it, and every node drops
   mallory's device (reputation: cheater, 0 exposure; its offers gone);
9. a summary: who traded what, which chunks moved, every node's view of the
   cheater before and after.

Stages 4 to 8 share one network and are ``stage(console, net, story) -> bool``
functions run in order by ``run_demo``; more contracts join the same way.

``run_demo`` is here; the stages are in ``demo_enrol`` (1 to 3), ``demo_net`` (the network they share:
``LocalNet``, ``Story``), ``demo_contracts`` (4 to 7), ``demo_cheat`` (8) and ``demo_summary`` (9); their names
are importable from here as before.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from node.dev.localnet import LITECOIND_ASSET, find_litecoind
from node.dev.demo_enrol import DCAP_DIR, ROOT, stage_dcap, stage_enrol, stage_identity  # noqa: F401 (re-exported)
from node.dev.demo_net import Daemon, LocalNet, Story  # noqa: F401 (re-exported)
from node.dev.demo_contracts import stage_escrow, stage_network, stage_option, stage_swap
from node.dev.demo_cheat import (  # noqa: F401 (re-exported: the flake tests check how a sale ended)
    CHEAT_ATTEMPTS, ENDED, offer_end, one_chunk_sold_twice, sale_end, stage_cheat,
)
from node.dev.demo_summary import MOVED, stage_summary  # noqa: F401 (re-exported)


# ------------------------------------------------------------------ the whole story
NODES = ["alice", "bob", "carol", "dave", "mallory"]


def run_demo(root: Path) -> bool:
    console = Console()
    console.print("[bold red]The TEE in this demo is SIMULATED and INSECURE[/bold red] (no TEE hardware here).")
    alice = root / "alice"
    _, pid = stage_identity(console, alice)
    stage_enrol(console, alice, pid)
    stage_dcap(console)
    utxo = LITECOIND_ASSET if find_litecoind() else "BTC-REG"  # alice's chunks on litecoind when it is installed
    story = Story(deposits={"alice": (utxo, 4), "bob": ("ETH-DEV", 4), "carol": ("ETH-DEV", CHEAT_ATTEMPTS),
                            "dave": ("ETH-DEV", CHEAT_ATTEMPTS), "mallory": ("BTC-REG", 2 * CHEAT_ATTEMPTS)},
                  cheater="mallory", victims=("carol", "dave"), utxo=utxo)
    # The stages share one network and run in order; each is ``stage(console, net, story) -> bool``.
    # alice's 4 chunks (LTC-REG on litecoind when installed, else BTC-REG): 2 for the swap, 1 in escrow, 1 written as an option; bob's 4 ETH-DEV
    # chunks: 2 for the swap, the option's premium and strike.
    stages = [stage_network, stage_swap, stage_escrow, stage_option, stage_cheat]
    failed: list[str] = []
    try:
        with LocalNet(console, root / "net", NODES, broken={"mallory": "double-release"}) as net:
            for stage in stages:
                try:
                    ok = stage(console, net, story)
                except RuntimeError as exc:  # a wait that timed out: named with its stage, not as the setup
                    console.print(f"[red]{exc}; logs in {net.root}[/red]")
                    ok = False
                if not ok:
                    failed.append(stage.__name__.removeprefix("stage_"))
                    if stage is stage_network:
                        break  # nothing after it works without the offers
            stage_summary(console, net, story)
    except RuntimeError as exc:
        console.print(f"[red]{exc}; logs in {root / 'net'}[/red]")
        failed.append("network setup")
    console.rule("[bold]done")
    if failed:  # said last, so that the tail of the output names what went wrong
        console.print(f"[red]the demo FAILED at: {', '.join(failed)} (see the red lines above)[/red]")
    return not failed
