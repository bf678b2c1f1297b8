"""Gossipsub on py-libp2p 0.8.1, with REJECT/IGNORE validation and scoring.

py-libp2p 0.8.1 topic validators return a plain ``bool``: ``False`` makes
``Pubsub.push_msg`` call ``scorer.on_invalid_message`` (the P4 penalty), so
there is no way to drop a message *without* a penalty (gossipsub v1.1's
"extended validators", ``ValidationResult.Ignore`` in go/rust/nim). This
module supplies it: ``KsPubsub`` overrides ``push_msg`` with the same steps
in the same order (blacklist, seen cache, publish-score gate, signature check)
and then a tri-state validator per topic:

* ACCEPT -> first-delivery score credit, handed to the application with the
  *forwarding* peer, forwarded by the router;
* REJECT -> ``scorer.on_invalid_message(forwarder, topic)`` (P4; the weights
  in ``score_params()`` make it count), dropped, not forwarded;
* IGNORE -> dropped, not forwarded, no penalty.

Every message id is marked seen *before* validation (as go-libp2p-pubsub
does), so a duplicate of a rejected or ignored message is not re-validated.
Messages this node publishes itself are not validated and not handed back
to the application (the protocol that published them already knows them).

``max_messages_per_topic_per_second``: py-libp2p's GossipSub counts messages
per *forwarding* peer per topic in a sliding second (our own publishes count
against our own id) and silently stops *forwarding* beyond the limit (the
message is still delivered locally), adding a P5 behaviour penalty of 5.
The default of 10 is too low for a network where every node re-publishes its
offer sheet: a mesh neighbour relays the sheets of every node. We set it from
``network.gossip_rate_limit`` (default 40: 40 sheets/s per neighbour is ~ a
network of 2,400 nodes re-publishing every minute, far above what one mesh
link should carry for us) — offers are batched into sheets precisely so that
this per-message limit is not what bounds offer throughput.

IDONTWANT (gossipsub v1.2), set as go-libp2p-pubsub does:

* ``max_idontwant_messages=1000``: how many message ids a peer's IDONTWANTs
  may name per heartbeat before the oldest are forgotten. py-libp2p's
  default of 10 is exceeded by any burst of more than 10 messages a second
  (a round of offer sheets from 20 nodes), after which peers send us the
  very sheets we told them we hold; 1000 is go's
  ``GossipSubMaxIDontWantMessages``.
* a message of at least ``IDONTWANT_BEFORE_VALIDATION`` bytes (1 KiB, go's
  ``GossipSubIDontWantMessageThreshold``) is announced to the mesh as soon
  as it is first seen, *before* validation, as the v1.2 spec suggests ("to
  further increase the effectiveness"): validating an offer sheet from an
  origin seen for the first time derives every offer's address, and the
  copies mesh peers would send meanwhile are whole sheets. py-libp2p sends
  its IDONTWANT only after validation, when it forwards; ``KsGossipSub``
  skips that second announcement for the messages announced early.
* smaller messages, and our own, get no IDONTWANT at all, as in go-libp2p
  (the spec's threshold): py-libp2p sent one RPC to every mesh peer for
  every message it forwarded, as many RPCs as forwarding a small message
  takes (issue #23: ``benchmarks._netcost`` measures what it saves).
  Measured on loopback (``benchmarks.network``, N=20), neither setting
  reduced the duplicate copies of a sheet a node receives (2.4 to 3.1 per
  sheet with them, 2.4 in a run without): there the copies are already in
  flight when the first arrives. Nor did making sure the early IDONTWANT
  leaves before validation starts (yielding to the per-peer writers until
  their queues drained, 2026-11-27: 2.70 copies per sheet and raw 2.49 in
  the same run; 2.59 to 2.82 without it). Their case is links with real latency.

Heartbeat and mesh (issue #23):

* **Adaptive gossip is off** (``adaptive_gossip_enabled=False``). py-libp2p
  0.8.1 turns it on by default: every 30 s it computes a "network health"
  figure and below 0.7 raises the heartbeat to ``max(60, ...)`` (below 0.4
  ``max(30, ...)``), floors meant for its own 120 s default. Our score has no
  positive component, so health never passed 0.75 and a quiet minute or a mesh
  of fewer than 6 peers slowed the 1 s heartbeat 30-60 fold: score decay, mesh
  repair and IHAVE gossip with it. Off, the heartbeat stays at ``heartbeat``
  (tests/runtime/test_gossip_heartbeat.py measures it).
* **Negative-score peers leave the mesh at the heartbeat**, as in go-libp2p:
  ``KsGossipSub.mesh_heartbeat`` prunes every mesh peer whose score is below 0
  (PRUNE, with the usual back-off, ``network.gossip_prune_backoff``), never
  grafts one, nor, as go-libp2p, one it pruned so within the back-off plus a
  heartbeat (else our GRAFT reaches a peer still backing off, which refuses it
  and backs off anew), and a GRAFT from one is answered with a PRUNE. py-libp2p prunes only an over-full mesh, so a
  penalised peer kept its slot.
* **IHAVE gossip only above the gossip threshold** (``gossip_heartbeat``), as
  the spec says; py-libp2p applied that threshold only when publishing.
* **Graylist**: py-libp2p checks the graylist threshold only on GRAFT; here
  messages and control from a peer under it are dropped (counted), as go's
  ``AcceptFrom`` does.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams
from libp2p.pubsub.validators import signature_validator

from node.protocols.base import Result, Validation
from node.runtime import gossiprecord
from node.runtime.pubsubpeers import OnePeerRegistration

log = logging.getLogger("keyswitch.runtime.gossip")

gossiprecord.install()  # GossipSub builds no signed peer record for the RPCs KsPubsub.write_msg sends without it

#: Standard gossipsub ids we speak, newest first (py-libp2p's 1.3/1.4/2.0 are
#: experimental and not spoken by go/rust, so we do not offer them).
MESHSUB_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)

#: A validator: (topic, data, forwarder peer id, origin peer id) -> Validation
TriValidator = Callable[[str, bytes, str], Validation]


@dataclass(frozen=True)
class Delivered:
    """An accepted gossip message, as the runtime hands it on."""

    topic: str
    data: bytes
    forwarder: str
    origin: str
    msg_id: bytes


def score_params(app_score: Callable[[str], float] | None = None, *, penalty_decay: float = 0.99) -> ScoreParams:
    """Peer-score weights: REJECTs (P4) and rate-limit abuse (P5) cost score.

    One REJECT costs 10 points, decaying 1 %/heartbeat (1 s); 4 recent
    REJECTs put a peer under the publish threshold (-40: its messages are
    dropped unvalidated), 8 under the graylist (-80: its RPCs are ignored).
    Any REJECT puts it below 0: out of our mesh at the next heartbeat.
    Forgiveness, at the 1 s heartbeat: a peer that sent 5 REJECTed messages
    (-50) is heard again after ``forgiven_after(5, -40)`` = 23 s and gets
    gossip (IHAVE) again after ``forgiven_after(5, -20)`` = 92 s; its counter
    reaches ``DECAY_TO_ZERO`` (score 0: back in the mesh) after
    ``forgiven_after(5, 0)`` = 619 s (one REJECT: 459 s).
    ``app_score(peer_id) -> float`` is the node's local reputation of the
    peer (P6, weight 1), e.g. the risk engine's view of the peer's devices.
    ``penalty_decay`` (``network.gossip_penalty_decay``) replaces the 0.99 of
    the REJECT counter; ``forgiven_after(..., decay=...)`` gives the times then
    (0.7: 3 REJECTs forgiven in 16 s, as tests/interop sets it).
    """
    fn = None
    if app_score is not None:
        def fn(peer: ID) -> float:  # noqa: E306
            return float(app_score(peer.to_base58()))
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=P4_WEIGHT, cap=100.0, decay=penalty_decay),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.99,
        p5_behavior_penalty_threshold=20.0,
        p6_appl_slack_weight=1.0 if fn else 0.0,
        p6_appl_slack_decay=1.0,
        publish_threshold=-40.0,
        gossip_threshold=-20.0,
        graylist_threshold=-80.0,
        accept_px_threshold=0.0,
        app_specific_score_fn=fn,
    )


P4_WEIGHT = 10.0
P4_DECAY = 0.99


def forgiven_after(rejects: int, threshold: float, *, heartbeat: float = 1.0, decay: float = P4_DECAY) -> float:
    """Seconds until ``rejects`` REJECTs (P4 only, each decaying by ``decay`` a heartbeat) decay back to
    ``threshold`` (a negative score, or 0: the score is 0 again)."""
    if threshold >= 0:  # back to 0: the counter must fall below DECAY_TO_ZERO
        return heartbeat * math.ceil(math.log(DECAY_TO_ZERO / rejects) / math.log(decay))
    penalty = P4_WEIGHT * rejects
    if penalty <= -threshold:
        return 0.0
    return heartbeat * math.ceil(math.log(-threshold / penalty) / math.log(decay))


def score_components(scorer, peer: ID, topics: list[str]) -> dict[str, float]:
    """The parts of ``scorer.score(peer, topics)`` (py-libp2p's ``PeerScorer``), each as it counts in the sum."""
    p = scorer.params
    out = {"p1_time_in_mesh": 0.0, "p2_first_deliveries": 0.0, "p3_mesh_deliveries": 0.0, "p4_invalid": 0.0}
    for t in topics:
        out["p1_time_in_mesh"] += p.p1_time_in_mesh.weight * min(scorer.time_in_mesh[peer][t], p.p1_time_in_mesh.cap)
        out["p2_first_deliveries"] += p.p2_first_message_deliveries.weight * min(
            scorer.first_message_deliveries[peer][t], p.p2_first_message_deliveries.cap)
        out["p3_mesh_deliveries"] += p.p3_mesh_message_deliveries.weight * min(
            scorer.mesh_message_deliveries[peer][t], p.p3_mesh_message_deliveries.cap)
        out["p4_invalid"] -= p.p4_invalid_messages.weight * min(scorer.invalid_messages[peer][t],
                                                                 p.p4_invalid_messages.cap)
    behaviour = (scorer.behavior_penalty.get(peer, 0.0) + scorer.graft_flood_penalties.get(peer, 0.0)
                 + scorer.iwant_spam_penalties.get(peer, 0.0) + scorer.ihave_spam_penalties.get(peer, 0.0)
                 + scorer.equivocation_penalties.get(peer, 0.0))
    over = behaviour - p.p5_behavior_penalty_threshold
    out["p5_behaviour"] = -over * p.p5_behavior_penalty_weight if over > 0 else 0.0
    out["p6_app"] = scorer.app_specific_scores.get(peer, 0.0) * p.p6_appl_slack_weight
    out["p7_ip_colocation"] = -scorer.ip_colocation_penalty(peer)
    for k, v in out.items():  # wire values: finite, rounded
        out[k] = round(v, 3) + 0.0 if math.isfinite(v) else 0.0  # (+ 0.0: no "-0.0")
    return out


#: messages this large or larger are announced with IDONTWANT before validation (go's threshold)
IDONTWANT_BEFORE_VALIDATION = 1024
#: message ids a peer's IDONTWANTs may name per heartbeat (go's GossipSubMaxIDontWantMessages)
MAX_IDONTWANT_MESSAGES = 1000


#: a decayed counter below this is zeroed (go-libp2p-pubsub's DecayToZero): without it a score that decays
#: by multiplication never gets back to 0, and a peer that once sent a REJECTed message would stay out of
#: our mesh (score < 0) for as long as it stays connected
DECAY_TO_ZERO = 0.01


class KsPeerScorer(PeerScorer):
    """py-libp2p's ``PeerScorer`` whose decayed counters reach zero (``DECAY_TO_ZERO``), as go's do."""

    def on_heartbeat(self, dt_seconds: float = 1.0) -> None:
        super().on_heartbeat(dt_seconds)
        for table in (self.time_in_mesh, self.first_message_deliveries, self.mesh_message_deliveries,
                      self.invalid_messages):
            for peer in list(table):
                per_topic = table[peer]
                for topic in [t for t, v in per_topic.items() if abs(v) < DECAY_TO_ZERO]:
                    del per_topic[topic]
                if not per_topic:
                    del table[peer]
        for table in (self.behavior_penalty, self.graft_flood_penalties, self.iwant_spam_penalties,
                      self.ihave_spam_penalties, self.equivocation_penalties):
            for peer in [p for p, v in table.items() if abs(v) < DECAY_TO_ZERO]:
                del table[peer]


class KsGossipSub(GossipSub):
    """py-libp2p's GossipSub, able to announce a message (IDONTWANT) before validating it."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        if self.scorer is not None:  # (no state yet: swapped for one whose counters decay to zero)
            self.scorer = KsPeerScorer(self.scorer.params)
        self._announced: dict[bytes, None] = {}  # ids announced before validation, not yet forwarded
        self.max_announced = 4096
        self.counters = {"heartbeats": 0, "pruned_negative": 0, "graft_refused_negative": 0,
                         "graylist_dropped_rpcs": 0, "gossip_withheld": 0}
        self._grafting = False
        self.last_heartbeat = 0.0
        #: (peer, topic) -> monotonic time it was pruned for a negative score: not grafted by us again before
        #: ``prune_back_off`` + one heartbeat (go-libp2p's local back-off and its slack), so that our GRAFT does
        #: not reach a peer still backing off from our PRUNE (which would refuse it and back off anew)
        self._pruned_negative: dict[tuple[ID, str], float] = {}

    # -- mesh: negative-score peers out (go-libp2p's heartbeat), never grafted
    def _score(self, peer: ID, topic: str) -> float:
        s = self.scorer.score(peer, [topic]) if self.scorer is not None else 0.0
        return s if math.isfinite(s) else -math.inf

    def mesh_heartbeat(self):
        self.counters["heartbeats"] += 1
        self.last_heartbeat = trio.current_time()
        self._forget_expired_prunes()
        negative: dict[ID, list[str]] = {}
        for topic, peers in self.mesh.items():
            for peer in [p for p in peers if self._score(p, topic) < 0]:
                # (not py-libp2p's local back-off, which would also leave it out of IHAVE gossip, which the
                # gossip threshold alone decides: our own, ``_pruned_negative``; the PRUNE tells the peer to
                # wait ``prune_back_off`` s before a GRAFT)
                peers.discard(peer)
                if self.scorer is not None:
                    self.scorer.on_leave_mesh(peer, topic)
                negative.setdefault(peer, []).append(topic)
                self._pruned_negative[(peer, topic)] = time.monotonic()
                self.counters["pruned_negative"] += 1
                log.debug("pruning %s from the %s mesh: score %.2f < 0", peer, topic, self._score(peer, topic))
        self._grafting = True
        try:
            graft, prune = super().mesh_heartbeat()
        finally:
            self._grafting = False
        for peer, topics in negative.items():
            for t in topics:
                if t not in prune[peer]:
                    prune[peer].append(t)
        return graft, prune

    def _get_in_topic_gossipsub_peers_from_minus(self, topic, num_to_select, minus, backoff_check=False):
        if not getattr(self, "_grafting", False):  # (fanout, gossip targets: the library's choice)
            return super()._get_in_topic_gossipsub_peers_from_minus(topic, num_to_select, minus, backoff_check)
        # mesh grafting (in mesh_heartbeat): never a peer with a negative score, nor one we pruned for it
        # within its back-off
        negative = [p for p in self.pubsub.peer_topics.get(topic, ()) if self._score(p, topic) < 0
                    or self._backing_off(p, topic)]
        return super()._get_in_topic_gossipsub_peers_from_minus(topic, num_to_select, set(minus) | set(negative),
                                                                backoff_check)

    def pack_control_msgs(self, ihave_msgs, graft_msgs, prune_msgs, *args, **kw):
        """Every PRUNE says its back-off, as go-libp2p's do. py-libp2p's heartbeat PRUNEs (over-full mesh, negative
        score) carried none, and the pruned peer then applied its own default (60 s in js-libp2p) whatever
        ``network.gossip_prune_backoff`` says: a GRAFT of ours before that was refused and the back-off renewed."""
        for prune in prune_msgs or ():
            if not prune.backoff:
                prune.backoff = self.prune_back_off
        return super().pack_control_msgs(ihave_msgs, graft_msgs, prune_msgs, *args, **kw)

    def _forget_expired_prunes(self) -> None:
        for key in list(self._pruned_negative):
            self._backing_off(*key)  # (drops the entry once its back-off is over)

    def _backing_off(self, peer: ID, topic: str) -> bool:
        at = self._pruned_negative.get((peer, topic))
        if at is None:
            return False
        if time.monotonic() - at < self.prune_back_off + self.heartbeat_interval:
            return True
        del self._pruned_negative[(peer, topic)]
        return False

    def gossip_heartbeat(self):
        """IHAVE targets, without the peers below the gossip threshold (py-libp2p checks it only on publish)."""
        targets = super().gossip_heartbeat()
        if self.scorer is not None:
            for peer in list(targets):
                topics = [t for t in targets[peer] if self.scorer.allow_gossip(peer, [t])]
                if len(topics) < len(targets[peer]):
                    self.counters["gossip_withheld"] += 1
                    targets[peer] = {t: targets[peer][t] for t in topics}
                    if not topics:
                        del targets[peer]
        return targets

    async def handle_graft(self, graft_msg, sender_peer_id: ID) -> None:
        topic = graft_msg.topicID
        if topic in self.mesh and self._score(sender_peer_id, topic) < 0:
            self.counters["graft_refused_negative"] += 1
            log.debug("refusing GRAFT from %s on %s: score %.2f < 0", sender_peer_id, topic,
                      self._score(sender_peer_id, topic))
            self._pruned_negative[(sender_peer_id, topic)] = time.monotonic()
            await self.emit_prune(topic, sender_peer_id, False, False)
            return
        await super().handle_graft(graft_msg, sender_peer_id)

    def graylisted(self, peer: ID) -> bool:
        topics = list(self.mesh) or list(getattr(self.pubsub, "topic_ids", ()))
        return self.scorer is not None and bool(topics) and self.scorer.is_graylisted(peer, topics)

    async def handle_rpc(self, rpc, sender_peer_id: ID) -> None:
        if self.graylisted(sender_peer_id):  # go's AcceptFrom: a graylisted peer's control is ignored
            self.counters["graylist_dropped_rpcs"] += 1
            return
        if rpc.HasField("senderRecord"):
            # Pubsub's reader verified and stored it a moment ago (and dropped the RPC had it been invalid); the
            # library's handle_rpc would verify the same signature again
            rpc.ClearField("senderRecord")
        await super().handle_rpc(rpc, sender_peer_id)

    async def announce_before_validation(self, msg_id: bytes, topic_ids) -> None:
        """IDONTWANT ``msg_id`` to our mesh peers now; the announcement on forwarding is then skipped."""
        self.skip_idontwant(msg_id)
        await GossipSub._emit_idontwant_for_message(self, msg_id, topic_ids)

    def skip_idontwant(self, msg_id: bytes) -> None:
        """No IDONTWANT for ``msg_id`` when it is forwarded (announced already, or not to be announced)."""
        if len(self._announced) >= self.max_announced:  # ids of messages that failed validation
            del self._announced[next(iter(self._announced))]
        self._announced[msg_id] = None

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids) -> None:
        if self._announced.pop(msg_id, 0) is None:
            return  # already announced before validation
        await super()._emit_idontwant_for_message(msg_id, topic_ids)


def make_gossipsub(*, rate_limit: float, app_score: Callable[[str], float] | None = None,
                   degree: int = 6, heartbeat: float = 1.0, penalty_decay: float = P4_DECAY,
                   prune_backoff: int = 60) -> GossipSub:
    """A GossipSub router with deliberate settings (see module docstring)."""
    return KsGossipSub(
        protocols=list(MESHSUB_PROTOCOLS),
        degree=degree,
        degree_low=max(1, degree - 2),
        degree_high=degree * 2,
        time_to_live=60,
        gossip_window=3,
        gossip_history=5,
        heartbeat_initial_delay=0.1,
        # py-libp2p's default is 120 s (go and rust use 1 s); the mesh is
        # repaired only on heartbeats, so 120 s would leave new peers out.
        heartbeat_interval=heartbeat,  # type: ignore[arg-type]
        score_params=score_params(app_score, penalty_decay=penalty_decay),
        prune_back_off=int(prune_backoff),
        # see the module docstring: its floors slowed our 1 s heartbeat to 30-60 s
        adaptive_gossip_enabled=False,
        max_messages_per_topic_per_second=float(rate_limit),
        max_idontwant_messages=MAX_IDONTWANT_MESSAGES,
        # all peers of a loopback test share one IP; the diversity logic is
        # harmless but pointless there and on a LAN, so keep it off.
        eclipse_protection_enabled=False,
    )


class KsPubsub(OnePeerRegistration, Pubsub):
    """``Pubsub`` with tri-state validation and forwarder-aware delivery, one registration of a peer at a time
    (``node.runtime.pubsubpeers``)."""

    def __init__(self, host, router, *, deliver_buffer: int = 4096, **kw) -> None:
        super().__init__(host, router, **kw)
        # Message ids are (origin, seqno). py-libp2p starts the seqno at the Unix time in *seconds* and adds one
        # a message: a node that published more than one message a second restarts below the seqnos it used
        # before its crash, so its new messages carry ids its peers have seen and are dropped for as long as
        # their seen cache lasts. go-libp2p starts at Unix nanoseconds; so do we.
        self.counter = time.time_ns()
        self.tri_validators: dict[str, TriValidator] = {}
        self._deliver_send, self.deliveries = trio.open_memory_channel[Delivered](deliver_buffer)
        self.counters = {"accept": 0, "reject": 0, "ignore": 0, "dropped_delivery": 0, "early_idontwant": 0,
                         "publish_dropped": 0, "graylist_dropped": 0}
        #: per peer: messages dropped unvalidated under the publish threshold / the graylist
        self.peer_drops: dict[str, dict[str, int]] = {}
        self.duplicates: dict[str, int] = {}  # topic -> copies received of messages already seen
        self.last_reasons: dict[str, str] = {}

    async def write_msg(self, stream, rpc_msg: rpc_pb2.RPC) -> bool:
        """Every RPC after the hello without our signed peer record: the hello on this stream carried it
        (``get_hello_packet``). py-libp2p attaches it to every RPC it writes and every receiver verifies its
        signature, twice (issue #23's hot spot); go- and js-libp2p send it in no gossip RPC."""
        if rpc_msg.HasField("senderRecord"):  # (also an empty one: ``gossiprecord`` makes gossipsub's b"", and a
            # receiver's pubsub drops an RPC whose field is present but no valid record, as an invalid record)
            rpc_msg.ClearField("senderRecord")  # (an RPC queued for several peers goes to each without it)
        return await super().write_msg(stream, rpc_msg)

    def set_tri_validator(self, topic: str, fn: TriValidator) -> None:
        self.tri_validators[topic] = fn

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> Validation:
        worst = Validation.accept()
        for topic in msg.topicIDs:
            fn = self.tri_validators.get(topic)
            if fn is None:
                continue
            try:
                v = fn(topic, bytes(msg.data), forwarder.to_base58())
            except Exception as exc:  # a validator must not kill the reader
                log.exception("validator for %s raised", topic)
                v = Validation.reject(f"validator error: {type(exc).__name__}")
            if v.result is Result.REJECT:
                return v
            if v.result is Result.IGNORE:
                worst = v
        return worst

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if self.is_peer_blacklisted(msg_forwarder) or self.is_peer_blacklisted(ID(msg.from_id)):
            return
        if self._is_msg_seen(msg):
            for topic in msg.topicIDs:
                self.duplicates[topic] = self.duplicates.get(topic, 0) + 1
            return
        scorer = getattr(self.router, "scorer", None)
        local = msg_forwarder == self.my_id
        if not local and scorer is not None:
            graylisted = getattr(self.router, "graylisted", None)
            if graylisted is not None and graylisted(msg_forwarder):
                self._drop(msg_forwarder, "graylist_dropped")
                log.debug("dropping message from %s: under the graylist threshold", msg_forwarder)
                return
            if not scorer.allow_publish(msg_forwarder, list(msg.topicIDs)):
                self._drop(msg_forwarder, "publish_dropped")
                log.debug("dropping message from %s: under publish threshold", msg_forwarder)
                return
        if self.strict_signing and not signature_validator(msg):
            log.debug("dropping message with bad pubsub signature from %s", msg_forwarder)
            if scorer is not None:
                for topic in msg.topicIDs:
                    scorer.on_invalid_message(msg_forwarder, topic)
            return
        if ID(msg.from_id) == self.my_id and not local:
            return  # our own message echoed back
        self._mark_msg_seen(msg)
        msg_id = self.get_message_id(msg)
        if local or len(msg.data) < IDONTWANT_BEFORE_VALIDATION:
            # as go-libp2p-pubsub: no IDONTWANT for a message smaller than its threshold, nor for our own (py-libp2p
            # sent one for every message, to every mesh peer: as many RPCs as forwarding a small message costs)
            skip = getattr(self.router, "skip_idontwant", None)
            if skip is not None:
                skip(msg_id)
        else:
            announce = getattr(self.router, "announce_before_validation", None)
            if announce is not None:
                self.counters["early_idontwant"] += 1
                await announce(msg_id, list(msg.topicIDs))
        if not local:
            v = self._validate(msg_forwarder, msg)
            if v.result is not Result.ACCEPT:
                key = v.result.value
                self.counters[key] += 1
                self.last_reasons[key] = v.reason
                if v.result is Result.REJECT and scorer is not None:
                    for topic in msg.topicIDs:
                        scorer.on_invalid_message(msg_forwarder, topic)
                log.debug("%s message from %s: %s", key, msg_forwarder, v.reason)
                return
            self.counters["accept"] += 1
            if scorer is not None:
                for topic in msg.topicIDs:
                    scorer.on_first_delivery(msg_forwarder, topic)
            for topic in msg.topicIDs:
                if topic in self.topic_ids:
                    try:
                        self._deliver_send.send_nowait(Delivered(
                            topic, bytes(msg.data), msg_forwarder.to_base58(),
                            ID(msg.from_id).to_base58(), msg_id))
                    except trio.WouldBlock:
                        self.counters["dropped_delivery"] += 1
        await self.router.publish(msg_forwarder, msg)

    def _drop(self, peer: ID, key: str) -> None:
        self.counters[key] += 1
        p = peer.to_base58()
        if p not in self.peer_drops and len(self.peer_drops) >= 4096:
            del self.peer_drops[next(iter(self.peer_drops))]
        d = self.peer_drops.setdefault(p, {"publish_dropped": 0, "graylist_dropped": 0})
        d[key] += 1

    def peer_score(self, peer: str, topics: list[str]) -> dict:
        """Score, its components, the thresholds it is below ("mesh" = below 0: kept out of our mesh; "gossip",
        "publish", "graylist") and the messages of ``peer`` dropped unvalidated (publish threshold, graylist)."""
        scorer = getattr(self.router, "scorer", None)
        pid = ID.from_base58(peer)
        drops = dict(self.peer_drops.get(peer, {"publish_dropped": 0, "graylist_dropped": 0}))
        if scorer is None or not topics:
            return {"score": 0.0, "score_components": {}, "below": [], **drops}
        score = self.score_of(peer, topics)
        p = scorer.params
        under = [name for name, th in (("gossip", p.gossip_threshold), ("publish", p.publish_threshold),
                                       ("graylist", p.graylist_threshold)) if score < th]
        if score < 0:
            under.insert(0, "mesh")
        return {"score": round(score, 3), "score_components": score_components(scorer, pid, topics),
                "below": under, **drops}

    def score_of(self, peer: str, topics: list[str]) -> float:
        scorer = getattr(self.router, "scorer", None)
        if scorer is None:
            return 0.0
        s = scorer.score(ID.from_base58(peer), topics)
        return s if math.isfinite(s) else 0.0
