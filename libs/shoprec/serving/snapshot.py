"""The serving snapshot: the gold tables the API answers from, loaded into memory at one Delta
version each, and followed as new versions are committed.

    gold.recommendations        newest as_of partition   per user: the batch list (rank order)
    gold.live_recommendations   whole table (if any)     per user: the stream's newer list
    gold.cold_start_lists       newest as_of partition   per country ("*": any other)
    gold.bundle_partners        newest as_of partition   per item: bought-together partners
    gold.item_features          newest as_of partition   text vectors (similar items)
    gold.item_time_profiles     newest as_of partition   month index, hour / weekday shares
    silver.items, silver.users                           descriptions, users' countries

Read with delta-rs (no JVM in the API process). A :class:`Snapshot` is immutable and built
whole before it replaces the one in use (one reference swap), so a request never sees a
half-applied update; :class:`Follower` polls the tables' log versions and swaps.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoprec import columns as C
from shoprec import paths
from shoprec.config import Config, RerankConfig
from shoprec.serving import context as X
from shoprec.tables.base import table_path

log = logging.getLogger(__name__)

# The tables a snapshot reads; gold.recommendations must exist, the others may not (yet).
TABLES = (
    C.GOLD_RECOMMENDATIONS,
    C.GOLD_LIVE_RECOMMENDATIONS,
    C.GOLD_COLD_START_LISTS,
    C.GOLD_BUNDLE_PARTNERS,
    C.GOLD_ITEM_FEATURES,
    C.GOLD_ITEM_TIME_PROFILES,
    C.SILVER_ITEMS,
    C.SILVER_USERS,
)
REQUIRED = (C.GOLD_RECOMMENDATIONS,)


class NotReady(Exception):
    """No snapshot can be loaded (yet): the tables the API needs are missing."""


# ------------------------------------------------------------------------------ per-key lists
@dataclass(frozen=True)
class Lists:
    """Rows grouped by a key (user, country, item) in rank order: columns as arrays, and per
    key the slice of its rows. Columnar so that 200,000 users' lists stay a few arrays."""

    index: Mapping[str, tuple[int, int]]
    columns: Mapping[str, np.ndarray]

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        span = self.index.get(key)
        if span is None:
            return None
        lo, hi = span
        return {name: col[lo:hi] for name, col in self.columns.items()}

    def __len__(self) -> int:
        return len(self.index)


def no_lists(columns: tuple[str, ...]) -> Lists:
    return Lists({}, {c: np.array([], dtype=object) for c in columns})


def group(table: pa.Table | None, key: str, order: str, columns: tuple[str, ...]) -> Lists:
    """``table``'s rows by ``key``, each key's rows ordered by ``order`` (none for no table)."""
    if table is None or table.num_rows == 0:
        return no_lists(columns)
    table = table.sort_by([(key, "ascending"), (order, "ascending")])
    keys = table.column(key).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    stops = np.r_[starts[1:], len(keys)]
    index = {str(keys[s]): (int(s), int(e)) for s, e in zip(starts, stops, strict=True)}
    return Lists(index, {c: _array(table.column(c)) for c in columns})


def _array(col: pa.ChunkedArray) -> np.ndarray:
    # NumPy's datetime64 drops the zone: timestamps stay Python datetimes (UTC-aware).
    if pa.types.is_timestamp(col.type):
        return np.array(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


# ------------------------------------------------------------------------------ the snapshot
@dataclass(frozen=True)
class Items:
    """What the API knows of every item: descriptions, unit text vectors, time profiles."""

    description: Mapping[str, str]
    vector_ids: np.ndarray  # item ids of the rows of ``vectors``
    vector_row: Mapping[str, int]
    vectors: np.ndarray  # (items, dim) float32, unit length (zero rows: no text)
    profiles: X.Profiles


@dataclass(frozen=True)
class Snapshot:
    versions: Mapping[str, int]  # table -> the Delta version loaded (-1: absent)
    sequence: int  # 1, 2, ... per process: what /metrics reports
    loaded_at: float  # time.time()
    as_of: date | None
    batch: Lists  # per user: item_id, score, source, reason, model_name, model_version
    live: Lists  # per user: the same + events_through
    cold: Lists  # per list_key: item_id, score, source, reason, model_version
    partners: Lists  # per item: partner_item_id, confidence, lift, support
    items: Items
    user_country: Mapping[str, str]
    generated_at: datetime | None = None
    seconds: float = 0.0  # load time
    # part -> (the versions of the tables it was built from, the part): what the next load reuses
    parts: Mapping[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ",".join(f"{t}@{v}" for t, v in sorted(self.versions.items()) if v >= 0)


LIST_COLUMNS = (C.ITEM_ID, C.SCORE, C.CANDIDATE_SOURCE, C.REASON, C.MODEL_NAME, C.MODEL_VERSION)


def latest_version(location: str) -> int:
    """The newest committed version of the Delta table at ``location``; -1 when there is none.
    Local tables: the highest ``_delta_log/<n>.json`` (a listing, no log replay)."""
    if paths.is_local(location):
        log_dir = os.path.join(paths.local_path(location), "_delta_log")
        try:
            names = os.listdir(log_dir)
        except FileNotFoundError:
            return -1
        versions = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
        return max(versions, default=-1)
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return int(DeltaTable(location).version())
    except TableNotFoundError:
        return -1


def current_versions(data_root: str) -> dict[str, int]:
    return {t: latest_version(table_path(data_root, t)) for t in TABLES}


def _read(data_root: str, name: str, version: int, newest_as_of: bool, columns: list[str] | None = None) -> pa.Table:
    """The table at ``version`` (only its newest as_of partition when asked)."""
    from deltalake import DeltaTable

    dt = DeltaTable(table_path(data_root, name), version=version)
    if newest_as_of and C.AS_OF in dt.metadata().partition_columns:
        values = [p[C.AS_OF] for p in dt.partitions()]
        if not values:
            return dt.to_pyarrow_table(columns=columns)
        newest = date.fromisoformat(max(values))  # partition values come as ISO text
        return dt.to_pyarrow_table(columns=columns, filters=[(C.AS_OF, "=", newest)])
    return dt.to_pyarrow_table(columns=columns)


def load(cfg: Config, versions: Mapping[str, int], sequence: int, previous: Snapshot | None = None) -> Snapshot:
    """A whole snapshot of ``cfg.data_root`` at ``versions`` (see :func:`current_versions`).

    Each part is built from the tables it depends on; a part whose tables are at the versions
    ``previous`` loaded them at is taken over from it instead of being read again (a stream
    batch moves gold.live_recommendations and silver, not the batch lists or the features)."""
    t0 = time.perf_counter()
    root = cfg.data_root
    missing = [t for t in REQUIRED if versions.get(t, -1) < 0]
    if missing:
        raise NotReady(f"no {', '.join(missing)} under {paths.local_path(root)} yet (run shoprec pipeline)")

    def read(name: str, newest: bool = True, columns: list[str] | None = None) -> pa.Table | None:
        v = versions.get(name, -1)
        return _read(root, name, v, newest, columns) if v >= 0 else None

    parts: dict[str, tuple[tuple[int, ...], object]] = {}

    def part(name: str, tables: tuple[str, ...], build: Callable[[], object]) -> Any:
        key = tuple(versions.get(t, -1) for t in tables)
        if previous is not None and previous.parts.get(name, ((), None))[0] == key:
            parts[name] = previous.parts[name]
        else:
            parts[name] = (key, build())
        return parts[name][1]

    batch, as_of, generated = part(C.GOLD_RECOMMENDATIONS, (C.GOLD_RECOMMENDATIONS,), lambda: _batch(read))
    live = part(
        C.GOLD_LIVE_RECOMMENDATIONS,
        (C.GOLD_LIVE_RECOMMENDATIONS, C.GOLD_RECOMMENDATIONS),
        lambda: _live_lists(read(C.GOLD_LIVE_RECOMMENDATIONS, newest=False), as_of),
    )
    cold = part(
        C.GOLD_COLD_START_LISTS,
        (C.GOLD_COLD_START_LISTS,),
        lambda: group(read(C.GOLD_COLD_START_LISTS), C.LIST_KEY, C.RANK, LIST_COLUMNS),
    )
    partner_cols = (C.PARTNER_ITEM_ID, C.RULE_CONFIDENCE, C.LIFT, C.SUPPORT)
    partners = part(
        C.GOLD_BUNDLE_PARTNERS,
        (C.GOLD_BUNDLE_PARTNERS,),
        lambda: group(read(C.GOLD_BUNDLE_PARTNERS), C.ITEM_ID, C.RANK, partner_cols),
    )
    described = part(
        C.SILVER_ITEMS,
        (C.SILVER_ITEMS,),
        lambda: _descriptions(read(C.SILVER_ITEMS, newest=False, columns=[C.ITEM_ID, C.DESCRIPTION])),
    )
    featured, vectors = part(
        C.GOLD_ITEM_FEATURES,
        (C.GOLD_ITEM_FEATURES,),
        lambda: _vectors(read(C.GOLD_ITEM_FEATURES, columns=[C.ITEM_ID, C.DESCRIPTION, C.TEXT_VECTOR])),
    )
    profiles = part(
        C.GOLD_ITEM_TIME_PROFILES,
        (C.GOLD_ITEM_TIME_PROFILES,),
        lambda: _profiles(read(C.GOLD_ITEM_TIME_PROFILES), cfg.recommend.rerank),
    )
    user_country = part(
        C.SILVER_USERS,
        (C.SILVER_USERS,),
        lambda: _countries(read(C.SILVER_USERS, newest=False, columns=[C.USER_ID, C.COUNTRY])),
    )
    ids, vector_row, unit = vectors
    return Snapshot(
        versions=dict(versions),
        sequence=sequence,
        loaded_at=time.time(),
        as_of=as_of,
        batch=batch,
        live=live,
        cold=cold,
        partners=partners,
        items=Items({**described, **featured}, ids, vector_row, unit, profiles),
        user_country=user_country,
        generated_at=generated,
        seconds=time.perf_counter() - t0,
        parts=parts,
    )


def _batch(read: Callable[..., pa.Table | None]) -> tuple[Lists, date | None, datetime | None]:
    """(the batch lists per user, their as_of, when they were generated)."""
    recs = read(C.GOLD_RECOMMENDATIONS)
    assert recs is not None  # required: load checks it first
    if not recs.num_rows:
        return group(recs, C.USER_ID, C.RANK, LIST_COLUMNS), None, None
    as_of = max(recs.column(C.AS_OF).to_pylist(), default=None)
    generated = pc.max(recs.column(C.GENERATED_AT)).as_py()
    return group(recs, C.USER_ID, C.RANK, LIST_COLUMNS), as_of, generated


def _live_lists(table: pa.Table | None, batch_as_of: date | None) -> Lists:
    """Per user the newest live list (the highest events_through; older rows of a user that a
    merge has not replaced yet are ignored). Lists scored against an older batch as_of than
    the batch lists served are dropped: the newer batch list is the better one."""
    columns = (*LIST_COLUMNS, C.EVENTS_THROUGH)
    if table is None or table.num_rows == 0:
        return no_lists(columns)
    if batch_as_of is not None:
        table = table.filter(pc.greater_equal(table.column(C.AS_OF), pa.scalar(batch_as_of, pa.date32())))
    newest = table.group_by(C.USER_ID).aggregate([(C.EVENTS_THROUGH, "max")])
    joined = table.join(newest, keys=C.USER_ID)
    keep = pc.equal(joined.column(C.EVENTS_THROUGH), joined.column(f"{C.EVENTS_THROUGH}_max"))
    return group(joined.filter(keep), C.USER_ID, C.RANK, columns)


def _descriptions(table: pa.Table | None) -> dict[str, str]:
    if table is None:
        return {}
    pairs = zip(table.column(C.ITEM_ID).to_pylist(), table.column(C.DESCRIPTION).to_pylist(), strict=False)
    return {i: d for i, d in pairs if d}


def _vectors(features: pa.Table | None) -> tuple[dict[str, str], tuple[np.ndarray, dict[str, int], np.ndarray]]:
    """(descriptions, (item ids, id -> row, unit text vectors)) of gold.item_features."""
    ids = np.array([], dtype=object)
    vectors = np.zeros((0, 1), dtype=np.float32)
    if features is not None and features.num_rows:
        ids = features.column(C.ITEM_ID).to_numpy(zero_copy_only=False)
        raw = features.column(C.TEXT_VECTOR).to_pylist()
        dim = max((len(v) for v in raw if v), default=1)
        vectors = np.zeros((len(raw), dim), dtype=np.float32)
        for i, v in enumerate(raw):
            if v and len(v) == dim:
                vectors[i] = v
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return _descriptions(features), (ids, {str(i): n for n, i in enumerate(ids)}, vectors)


def _profiles(table: pa.Table | None, rr: RerankConfig) -> X.Profiles:
    return X.profiles_from(table, rr) if table is not None else X.Profiles.empty()


def _countries(users: pa.Table | None) -> dict[str, str]:
    if users is None:
        return {}
    pairs = zip(users.column(C.USER_ID).to_pylist(), users.column(C.COUNTRY).to_pylist(), strict=False)
    return {u: c for u, c in pairs if c}


# ------------------------------------------------------------------------------ following new versions
@dataclass
class Follower:
    """Holds the snapshot in use and replaces it when a table gets a new version."""

    cfg: Config
    on_swap: Callable[[Snapshot], None] | None = None
    snapshot: Snapshot | None = None
    error: str | None = None  # why the last load failed (None: it did not)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load a new snapshot if any table moved; True when one was swapped in."""
        versions = current_versions(self.cfg.data_root)
        if self.snapshot is not None and versions == self.snapshot.versions:
            return False
        sequence = 1 if self.snapshot is None else self.snapshot.sequence + 1
        try:
            snap = load(self.cfg, versions, sequence, self.snapshot)
        except NotReady as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # a table rewritten under us, a vacuum: keep serving the old one
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("snapshot not refreshed (still serving %s): %s", self._label(), self.error)
            return False
        self.error = None
        self.snapshot = snap  # the swap: one reference assignment
        log.info(
            "snapshot %d loaded in %.2f s: %d users' lists (%d live), %s",
            snap.sequence,
            snap.seconds,
            len(snap.batch),
            len(snap.live),
            snap.label,
        )
        if self.on_swap is not None:
            self.on_swap(snap)
        return True

    def _label(self) -> str:
        return self.snapshot.label if self.snapshot is not None else "nothing"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="snapshot-follower", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the follower die: the next tick tries again
                log.exception("snapshot follower")
            self._stop.wait(self.cfg.serve.refresh_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
