"""The virtual engine's summary: what a run measured (gossip latency, books, requests, exposure,
reputation, adversaries), read from ``Engine``'s metrics and nodes. A mixin of ``Engine``."""

from __future__ import annotations

import re

import numpy as np

from simulations.simnode import LATENCY_BINS


class EngineSummary:
    """``Engine.summary`` and the views it is made of."""

    def summary(self) -> dict:
        m = self.m
        cum = np.cumsum(m.gossip_hist)
        total = int(cum[-1]) if len(cum) else 0

        def q(p: float) -> float | None:
            if not total:
                return None
            k = int(np.searchsorted(cum, p * total))
            return round(float(LATENCY_BINS[min(k + 1, len(LATENCY_BINS) - 2)]), 3)

        decided = m.decided
        ok = [r for r in decided if r["ok"]]
        book = np.asarray(m.book_latency) if m.book_latency else np.zeros(0)
        rep_h, rep_s = self._reputation_means()

        def expo(kind: str) -> dict:
            devs = [d for d, k in self.device_kind.items() if k == kind]
            peak = [m.exposure_peak.get(d, 0) for d in devs]
            per_client = [m.exposure_peak_per_client.get(d, 0) for d in devs]
            over = sum(1 for d in devs if m.exposure_peak_per_client.get(d, 0) > self._max_limit(d))
            return {"devices": len(devs), "class_start_limit_cents_max": max((self.device_limit[d] for d in devs),
                                                                              default=0),
                    "peak_total_cents_max": max(peak, default=0),
                    "peak_total_cents_sum": int(sum(peak)),
                    "peak_per_client_cents_max": max(per_client, default=0),
                    "devices_used": sum(1 for p in peak if p > 0),
                    "devices_over_their_class_cap_at_one_client": over}

        spam_pub = m.spam["published"]
        return {
            "scenario": self.sc["run"]["name"],
            "seed": self.seed,
            "nodes": len(self.nodes),
            "full_nodes": sum(1 for n in self.nodes if n.full),
            "publishers": sum(1 for n in self.nodes if n.enclave is not None),
            "simulated_seconds": self.sc["run"]["duration"],
            "events": m.events,
            "gossip": {
                "sheets_published": m.sheets_published,
                "sheets_changed": m.sheets_changed,
                "sheets_reannounced": m.sheets_reannounced,
                "pull": self._pull_summary(),
                "deliveries": total,
                "latency_s": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99)},
                "book_latency_s": ({"p50": round(float(np.quantile(book, 0.5)), 4),
                                    "p90": round(float(np.quantile(book, 0.9)), 4),
                                    "max": round(float(book.max()), 4)} if len(book) else None),
                "coverage_mean": round(float(np.mean(m.coverage)), 4) if m.coverage else None,
                "validations_at_full_nodes": dict(m.validations),
                "verdict_mismatch": m.verdict_mismatch,
            },
            "requests": {
                "sent": m.requests_sent,
                "not_sent": m.requests_not_sent,
                "decided": len(decided),
                "ok": len(ok),
                "ok_share": round(len(ok) / len(decided), 4) if decided else None,
                "proposals_sent": m.proposals_sent,
                "proposals_per_request_mean": round(float(np.mean([r["proposals"] for r in decided])), 3)
                if decided else None,
                "overshoot_cents_mean": round(float(np.mean([r["overshoot_cents"] for r in ok])), 2) if ok else None,
                "overshoot_cents_max": max((r["overshoot_cents"] for r in ok), default=None),
                "stream_errors": m.stream_errors,
                "failure_reasons": _count(re.sub(r"\d+(\.\d+)?", "N", r["reason"])[:160]
                                          for r in decided if not r["ok"]),
            },
            "exposure": {"honest": expo("honest"), "sybil": expo("sybil"), "cap_violations": m.cap_violations,
                         # with real contracts, the role adversaries' business too (simulations.contracts)
                         **({k: expo(k) for k in sorted(set(self.device_kind.values()) - {"honest", "sybil"})}
                            if self.contracts is not None else {})},
            "reputation_at_requesters": {
                "honest_mean": rep_h,
                "sybil_mean": rep_s,
                "by_kind": self._reputation_by_kind(),
            },
            "adversaries": self._adversary_summary(),
            "spam": dict(m.spam, receivers_per_message=round(m.spam["receivers"] / spam_pub, 3) if spam_pub else None),
            "churn_events": m.churn_events,
            **({"contracts": self.contracts.summary()} if self.contracts is not None else {}),
            "fees": dict(m.fees, fee_bp=self.sc["fees"]["contract_fee_bp"],
                         insurance_share=self.sc["fees"]["insurance_share"],
                         losses_covered_share=(round(min(1.0, m.fees["pool_cents"] / m.fees["honest_losses_cents"]), 4)
                                               if m.fees["honest_losses_cents"] else None)),
        }

    def _pull_summary(self) -> dict:
        """The pulls on (re)connect of the full nodes, summed (``OffersProtocol.pull_stats``)."""
        out: dict[str, int] = {}
        for n in self.nodes:
            if n.full:
                for k, v in n.offers.pull_stats.items():
                    out[k] = out.get(k, 0) + v
        return dict(out, relay_answers=self.m.relay_pull_answers)

    @property
    def _dev_class(self) -> dict[bytes, str]:
        if not hasattr(self, "_dev_class_cache"):
            self._dev_class_cache = {n.device_id: n.device_class for n in self.nodes if n.enclave is not None}
        return self._dev_class_cache

    def _reputation_by_kind(self) -> dict[str, float]:
        """Mean score of each kind of device (honest, sybil, slanderer, ...) over the requesters' views."""
        acc: dict[str, list[float]] = {}
        for i in self.requesters:
            rep = self.nodes[i].engine.reputation
            for dev, kind in self.device_kind.items():
                if rep.record(dev) is not None:
                    acc.setdefault(kind, []).append(rep.score(dev, self.now))
        return {k: round(float(np.mean(v)), 3) for k, v in sorted(acc.items())}

    def _views(self, kind: str) -> dict:
        """Every full node's view of the devices of ``kind``: scores, how many (view, device) pairs are not
        acceptable, cheaters."""
        from node.risk.reputation import ACCEPT_THRESHOLD

        scores, bad, cheat = [], 0, 0
        for node in self.nodes:
            if not node.full:
                continue
            rep = node.engine.reputation
            for dev, k in self.device_kind.items():
                if k != kind or dev == node.device_id or rep.record(dev) is None:
                    continue
                scores.append(rep.score(dev, self.now))
                bad += not rep.acceptable(dev, self.now)
                cheat += rep.is_cheater(dev)
        return {"views": len(scores), "score_mean": round(float(np.mean(scores)), 3) if scores else None,
                "score_min": round(float(min(scores)), 3) if scores else None,
                "not_acceptable": bad, "cheater_marks": cheat, "accept_threshold": ACCEPT_THRESHOLD}

    def _adversary_summary(self) -> dict:
        m, adv, out = self.m, self.sc["adversaries"], {}
        full = [n for n in self.nodes if n.full]

        def chosen(kind: str) -> dict:
            devs = sum(1 for k in self.device_kind.values() if k == kind)
            a, b = m.chosen_cents.get(kind, [0, 0])
            return {"devices": devs, "chosen_cents_first_half": a, "chosen_cents_second_half": b,
                    "chosen_cents_per_device_first_half": round(a / devs, 1) if devs else None,
                    "chosen_cents_per_device_second_half": round(b / devs, 1) if devs else None}

        if "forger" in adv:
            out["forger"] = dict(m.forger)
        if "slanderer" in adv:
            refuted = sum(n.outcomes.stats["refuted"] for n in full)
            out["slanderer"] = {"reports_published": m.slander["published"], "refuted_at_full_nodes": refuted,
                                "honest_views": self._views("honest"), "slanderer_views": self._views("slanderer")}
        if "withholder" in adv:
            out["withholder"] = {**m.withheld, "withholder_views": self._views("withholder"),
                                 "withholder": chosen("withholder"), "honest": chosen("honest")}
        if "broken_tee" in adv:
            devs = [d for d, k in self.device_kind.items() if k == "broken_tee"]
            per = []
            for dev in devs:
                spends = [x for x in m.double_spends if x["device"] == dev.hex()]
                others = [n for n in full if n.device_id != dev]
                times = [m.cheater_at.get((dev, n.idx)) for n in others]
                t0 = min((x["at"] for x in spends), default=None)
                done = [t for t in times if t is not None]
                victims = {x["client"] for x in spends}
                elsewhere = [t for n, t in zip(others, times) if t is not None and n.idx not in victims]
                per.append({
                    "device": dev.hex()[:16],
                    "double_spends": len(spends),
                    "cents_lost_by_clients": sum(x["cents"] for x in spends),
                    "first_double_spend_t": round(t0 - self.t0, 6) if t0 is not None else None,
                    "full_nodes": len(others),
                    "full_nodes_isolated": len(done),
                    # the victim sees it on the ledger at once; the others when its report reaches them
                    "detect_s": round(min(done) - t0, 4) if done and t0 is not None else None,
                    "detect_by_a_non_victim_s": round(min(elsewhere) - t0, 4) if elsewhere and t0 is not None
                    else None,
                    "isolate_all_s": round(max(done) - t0, 4) if len(done) == len(others) and t0 is not None
                    else None,
                    "books_with_its_offers": sum(1 for n in others
                                                 if any(d == dev for d, _ in n.book.devices())),
                })
            out["broken_tee"] = {"devices": per, "double_spends": len(m.double_spends)}
        if self.revoke_cfg is not None:
            cls = self.revoke_cfg["device_class"]
            at = getattr(self, "revoked_at", None)
            ts = [t - self.t0 for t in m.revocation_at.values()]
            out["revoked_class"] = {
                "class": cls, "at": self.revoke_cfg["at"],
                "devices": sum(1 for c in self._dev_class.values() if c == cls),
                "full_nodes": len(full), "full_nodes_applied": len(ts),
                "apply_all_s": round(max(ts) - (at - self.t0), 4) if at is not None and len(ts) == len(full)
                else None,
                "offers_left_in_a_book_after_applying_max": max(m.revocation_left, default=None),
                "books_with_class_offers_at_end": sum(1 for n in full if any(c == cls for _, c in n.book.devices())),
                "chunks_chosen_after_applying": m.revoked_class_chosen_after,
                "class_cap_cents_at_end_max": max(n.engine.caps.device_limit(b"\0" * 32, cls, self.now)[0] for n in full),
                "sheets_ignored_as_revoked": m.revoked_ignored,
                "exposure_cents_at_revocation": next((v for t, v in m.class_exposure
                                                      if at is not None and t >= at - self.t0), None),
                "exposure_cents_at_end": m.class_exposure[-1][1] if m.class_exposure else None,
            }
        return out

    def _reputation_means(self) -> tuple[float | None, float | None]:
        """Mean score, over the requesters' views, of the honest and of the sybil devices they know."""
        rep_h, rep_s = [], []
        for i in self.requesters:
            rep = self.nodes[i].engine.reputation
            for dev, kind in self.device_kind.items():
                if rep.record(dev) is not None and kind in ("sybil", "honest"):
                    (rep_s if kind == "sybil" else rep_h).append(rep.score(dev, self.now))
        return (round(float(np.mean(rep_h)), 3) if rep_h else None,
                round(float(np.mean(rep_s)), 3) if rep_s else None)

    def _max_limit(self, dev: bytes) -> int:
        """The most one client may hold on a device of its class (its class's maximum limit)."""
        from node.risk.classes import ClassRegistry

        dclass = next((n.device_class for n in self.nodes if n.device_id == dev), "sim")
        return ClassRegistry().resolve(dclass).max_limit_cents


def _count(items) -> dict:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))
