"""A user's list at request time, from the snapshot, the request's context and the session.

the user's live list (gold.live_recommendations)   -> served_from "live"
else their batch list (gold.recommendations)       -> "batch"
else the cold-start list of the country            -> "cold_start"
  + request-time context: season and hour/weekday terms for the request's moment
  + the session: bought-together partners of carted / bought items lead; those items
    themselves go to the end (already in the basket)
  + filled from the country's list when K asks for more than the list holds
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import numpy as np

from shoprec import columns as C
from shoprec.config import ServeConfig
from shoprec.serving.session import SessionEvent
from shoprec.serving.snapshot import Snapshot

LIVE, BATCH, COLD_START = "live", "batch", "cold_start"


@dataclass
class Row:
    item_id: str
    score: float
    source: str
    reason: str


@dataclass(frozen=True)
class Answer:
    user_id: str
    rows: list[Row]
    served_from: str
    as_of: date | None
    events_through: datetime | None
    model_version: str | None
    country: str | None

    def to_json(self, snap: Snapshot) -> dict:
        desc = snap.items.description
        return {
            "user_id": self.user_id,
            "items": [
                {
                    "item_id": r.item_id,
                    "rank": n,
                    "score": round(r.score, 6),
                    "source": r.source,
                    "reason": r.reason,
                    "description": desc.get(r.item_id),
                }
                for n, r in enumerate(self.rows, start=1)
            ],
            "served_from": self.served_from,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "events_through": _iso(self.events_through),
            "model_version": self.model_version,
            "country": self.country,
        }


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def _rows(cols: dict[str, np.ndarray]) -> list[Row]:
    return [
        Row(str(i), float(s), str(src), str(r or ""))
        for i, s, src, r in zip(cols[C.ITEM_ID], cols[C.SCORE], cols[C.CANDIDATE_SOURCE], cols[C.REASON], strict=True)
    ]


def cold_list(snap: Snapshot, country: str | None) -> tuple[str, dict[str, np.ndarray] | None]:
    """The cold-start list of ``country`` (the global one, ``*``, for any other)."""
    if country:
        lst = snap.cold.get(country)
        if lst is not None:
            return country, lst
    return C.COLD_START_ANY_COUNTRY, snap.cold.get(C.COLD_START_ANY_COUNTRY)


def answer(
    snap: Snapshot,
    user_id: str,
    k: int,
    at: datetime,
    country: str | None,
    session: list[SessionEvent],
    scfg: ServeConfig,
) -> Answer:
    country = country or snap.user_country.get(user_id)
    live, batch = snap.live.get(user_id), snap.batch.get(user_id)
    cols = live if live is not None else batch
    events_through: datetime | None = None
    if cols is not None:
        served_from = LIVE if live is not None else BATCH
        rows = _rows(cols)
        version = str(cols[C.MODEL_VERSION][0]) if len(cols[C.MODEL_VERSION]) else None
        if live is not None:
            events_through = max(cols[C.EVENTS_THROUGH])
        elif snap.as_of is not None:
            # The batch list holds the history before as_of.
            events_through = datetime.combine(snap.as_of, time.min, tzinfo=UTC)
    else:
        served_from, version = COLD_START, None
        _key, lst = cold_list(snap, country)
        rows = _rows(lst) if lst is not None else []
        version = str(lst[C.MODEL_VERSION][0]) if lst is not None and len(lst[C.MODEL_VERSION]) else None
    rows = with_context(rows, snap, at, scfg)
    rows = with_session(rows, snap, session, scfg)
    if len(rows) < k:
        rows = filled(rows, snap, country, k, exclude={e.item_id for e in session})
    return Answer(user_id, rows[:k], served_from, snap.as_of, events_through, version, country)


def with_context(rows: list[Row], snap: Snapshot, at: datetime, scfg: ServeConfig) -> list[Row]:
    """The rows re-scored for the request's moment, best first (ties keep their order)."""
    if not rows:
        return rows
    deltas = snap.items.profiles.deltas(
        [r.item_id for r in rows], at, snap.as_of, scfg.season_weight, scfg.moment_weight
    )
    scored = [Row(r.item_id, r.score + float(d), r.source, r.reason) for r, d in zip(rows, deltas, strict=True)]
    order = sorted(range(len(scored)), key=lambda n: -scored[n].score)  # stable: ties keep the list's order
    return [scored[n] for n in order]


def with_session(rows: list[Row], snap: Snapshot, session: list[SessionEvent], scfg: ServeConfig) -> list[Row]:
    """Partners of the session's items first (newest item first, then by the rule's
    confidence), the list after them, the session's own items at the end."""
    if not session:
        return rows
    desc = snap.items.description
    in_basket = {e.item_id for e in session}
    lead: list[Row] = []
    seen: set[str] = set(in_basket)
    for e in session:  # newest first
        partners = snap.partners.get(e.item_id)
        if partners is None:
            continue
        what = "you just bought" if e.event_type == C.PURCHASE else "in your basket"
        name = desc.get(e.item_id) or e.item_id
        picked = 0
        for p, conf in zip(partners[C.PARTNER_ITEM_ID], partners[C.RULE_CONFIDENCE], strict=True):
            p = str(p)
            if picked >= scfg.session_partners:
                break
            if p in seen:
                continue
            seen.add(p)
            picked += 1
            lead.append(Row(p, float(conf), C.SRC_BUNDLE, f"goes with {name} ({what})"))
    top = max((r.score for r in rows), default=0.0)
    # Partners above every list row, in the order chosen above.
    lead = [Row(r.item_id, top + 1.0 + (len(lead) - n), r.source, r.reason) for n, r in enumerate(lead)]
    rest = [r for r in rows if r.item_id not in seen]
    basket = [r for r in rows if r.item_id in in_basket]
    bottom = min((r.score for r in rows), default=0.0)
    basket = [Row(r.item_id, bottom - 1.0 - n, r.source, "already in your basket") for n, r in enumerate(basket)]
    return lead + rest + basket


def filled(rows: list[Row], snap: Snapshot, country: str | None, k: int, exclude: set[str]) -> list[Row]:
    """``rows`` and, after them, the country's cold-start list (items not already there and
    not in ``exclude``: the session's basket)."""
    _, lst = cold_list(snap, country)
    if lst is None:
        return rows
    have = {r.item_id for r in rows} | exclude
    bottom = min((r.score for r in rows), default=0.0)
    out = list(rows)
    for r in _rows(lst):
        if len(out) >= k:
            break
        if r.item_id in have:
            continue
        have.add(r.item_id)
        out.append(Row(r.item_id, min(r.score, bottom - 1e-6 * len(out)), r.source, r.reason))
    return out


def similar(snap: Snapshot, item_id: str, k: int) -> list[tuple[str, float]] | None:
    """The ``k`` items whose description vectors are closest to ``item_id``'s (cosine);
    None when the item has no vector."""
    row = snap.items.vector_row.get(item_id)
    if row is None:
        return None
    v = snap.items.vectors
    sims = v @ v[row]
    if not np.any(v[row]):
        return []
    sims[row] = -np.inf
    n = min(k, len(sims) - 1)
    if n <= 0:
        return []
    top = np.argpartition(-sims, n - 1)[:n]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(str(snap.items.vector_ids[i]), float(sims[i])) for i in top if np.isfinite(sims[i])]


def bundles(snap: Snapshot, item_id: str, k: int) -> list[dict] | None:
    partners = snap.partners.get(item_id)
    if partners is None:
        return None
    desc = snap.items.description
    return [
        {
            "item_id": str(p),
            "rank": n,
            "confidence": round(float(c), 6),
            "lift": round(float(lift), 6),
            "support": round(float(s), 8),
            "description": desc.get(str(p)),
        }
        for n, (p, c, lift, s) in enumerate(
            zip(
                partners[C.PARTNER_ITEM_ID][:k],
                partners[C.RULE_CONFIDENCE][:k],
                partners[C.LIFT][:k],
                partners[C.SUPPORT][:k],
                strict=True,
            ),
            start=1,
        )
    ]
