"""``POST /v1/events``: each event checked with the event-log adapter's rules (the same reason
codes, in the same order, as the ingest's quarantine), the good ones landed for the stream
(``land``; stream.source=kafka: produced to its topic, ``serving.kafka_sink``).

The API's check is a front door, not the record: the stream ingests the landed file with the
full validation (duplicates against silver included), so an event that passes here can still
be quarantined there, never the other way round for the rules below
(tests/integration/test_serve.py runs the same bad events through both).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shoprec import columns as C
from shoprec import paths
from shoprec.config import Config, IngestConfig
from shoprec.ingest import event_log as E
from shoprec.ingest import quality as Q

_EPOCH = re.compile(r"^[0-9]{9,13}(\.[0-9]+)?$")
_SPACES = re.compile(r"\s+")
_counter = itertools.count()


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"index": self.index, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Accepted:
    index: int
    record: dict  # as posted (the stream reads exactly this)
    user_id: str | None
    item_id: str
    event_type: str  # canonical: view | cart | purchase | return


def _text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):  # JSON true/false: Spark reads it as the text "true" / "false"
        return "true" if v else "false"
    if isinstance(v, int | float | str):
        return str(v)
    raise TypeError


def _clean(v: str | None) -> str | None:
    if v is None:
        return None
    c = _SPACES.sub(" ", v.strip())
    return c or None


def _blank(v: str | None) -> bool:
    return v is None or not v.strip()


def parse_time(text: str, source_zone: str) -> datetime | None:
    """The instant of an event time the ingest would read: epoch seconds or millis, ISO 8601
    (with or without a zone; naive times are in ``ingest.source_timezone``)."""
    t = text.strip()
    if _EPOCH.match(t):
        value = float(t)
        if len(t.split(".")[0]) >= 12:
            value /= 1000.0
        return datetime.fromtimestamp(int(value), tz=UTC)
    try:
        parsed = datetime.fromisoformat(t)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(source_zone))


def check(event: object, index: int, icfg: IngestConfig, now: datetime) -> Accepted | Rejected:
    """One posted event: accepted, or the first rule it fails (the ingest's order)."""
    names = E.field_names(icfg.event_log_columns)
    if not isinstance(event, dict):
        return Rejected(index, Q.MALFORMED, "an event is a JSON object")
    known = set(names.values())
    unknown = sorted(k for k in event if k not in known)
    if unknown:
        return Rejected(
            index, Q.MALFORMED, f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(names.values())})"
        )
    try:
        f = {field: _text(event.get(name)) for field, name in names.items()}
    except TypeError:
        return Rejected(index, Q.MALFORMED, "field values are strings or numbers")
    user, session = _clean(f["user_id"]), _clean(f["session_id"])
    if _blank(f["item_id"]):
        return Rejected(index, Q.MISSING_KEY, "item id is empty")
    if user is None and session is None:
        return Rejected(index, Q.MISSING_KEY, "neither user id nor session id is given")
    for field in E.IDS:
        pattern, value = icfg.id_patterns.get(field), f[field]
        if pattern is not None and not _blank(value) and not re.search(pattern, value.strip()):  # type: ignore[union-attr]
            return Rejected(index, Q.INVALID_ID, f"{field} '{value.strip()}' does not match {pattern}")  # type: ignore[union-attr]
    if _blank(f["event_type"]):
        return Rejected(index, Q.MISSING_KEY, "event type is empty")
    if _blank(f["timestamp"]):
        return Rejected(index, Q.MISSING_KEY, "timestamp is empty")
    event_type = E.EVENT_ALIASES.get(f["event_type"].strip().lower())  # type: ignore[union-attr]
    if event_type is None:
        return Rejected(
            index, Q.INVALID_EVENT_TYPE, f"event type '{f['event_type']}' is not view, cart, purchase or return"
        )
    ts = parse_time(f["timestamp"], icfg.source_timezone)  # type: ignore[arg-type]
    if ts is None:
        return Rejected(index, Q.UNPARSABLE, f"timestamp '{f['timestamp']}' is not a date-time")
    price = _number(f["price"])
    if not _blank(f["price"]) and price is None:
        return Rejected(index, Q.UNPARSABLE, f"price '{f['price']}' is not a number")
    if price is not None and not math.isfinite(price):
        return Rejected(index, Q.UNPARSABLE, f"price '{f['price'].strip()}' is not a finite number")  # type: ignore[union-attr]
    qty = 1 if _blank(f["quantity"]) else _integer(f["quantity"])
    if qty is None:
        return Rejected(index, Q.UNPARSABLE, f"quantity '{f['quantity']}' is not an integer")
    low = datetime.combine(date.fromisoformat(icfg.min_date), datetime.min.time(), tzinfo=UTC)
    if ts < low or ts > now + timedelta(days=icfg.max_future_days):
        return Rejected(index, Q.TIMESTAMP_OUT_OF_RANGE, f"timestamp {f['timestamp']} is outside the plausible range")
    if qty == 0:
        return Rejected(index, Q.ZERO_QUANTITY, "quantity is 0")
    if qty < 0:
        return Rejected(index, Q.SIGN_MISMATCH, "negative quantity (send returns as event type return)")
    if price is not None and price < 0:
        return Rejected(index, Q.NON_POSITIVE_PRICE, "negative price")
    if event_type == C.PURCHASE and price == 0:
        return Rejected(index, Q.NON_POSITIVE_PRICE, "zero price on a purchase")
    return Accepted(index, event, user, f["item_id"].strip(), event_type)  # type: ignore[union-attr]


def _number(v: str | None) -> float | None:
    if _blank(v):
        return None
    try:
        return float(v.strip())  # type: ignore[union-attr]
    except ValueError:
        return None


def _integer(v: str | None) -> int | None:
    try:
        return int(v.strip())  # type: ignore[union-attr]
    except (ValueError, AttributeError):
        return None


def event_json(a: Accepted) -> str:
    """The event as the stream reads it: one event-log .jsonl line (without its line break),
    and the same text as the value of its Kafka message."""
    return json.dumps(a.record, ensure_ascii=False, separators=(",", ":"))


def land(cfg: Config, accepted: list[Accepted]) -> str | None:
    """Write the accepted events as one JSON-lines file into the stream's landing folder:
    written under a hidden name first, then renamed in (the stream's file source reads a
    name once, and skips names starting with a dot). Returns the file's path."""
    if not accepted:
        return None
    landing = paths.local_path(paths.under_root(cfg.data_root, cfg.stream.landing))
    os.makedirs(landing, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"api-{stamp}-{os.getpid()}-{next(_counter):06d}.jsonl"
    tmp = os.path.join(landing, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for a in accepted:
            out.write(event_json(a) + "\n")
        out.flush()
        os.fsync(out.fileno())
    final = os.path.join(landing, name)
    os.rename(tmp, final)
    return final
