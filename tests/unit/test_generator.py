"""The synthetic event-log generator: files, contract columns, skew, bad rows, determinism.

Everything is read back from the files written (pyarrow, csv, json), no Spark.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shoprec.ingest import generator as gen
from shoprec.ingest.generator import EVENT_COLUMNS, GeneratorResult, generate

EVENT_TYPES = {"view", "cart", "purchase"}
DEVICES = {"desktop", "mobile", "tablet", "app"}
PARQUET_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("session_id", pa.string()),
        ("device", pa.string()),
        ("country", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.int32()),
    ]
)
ISO = "%Y-%m-%dT%H:%M:%SZ"


# ---------------------------------------------------------------- reading back


def read_parquet(result: GeneratorResult) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in result.event_files])


def read_rows(result: GeneratorResult) -> list[tuple]:
    """All events in file order as (user, item, type, time text, session, device, country,
    price, quantity); price/quantity as numbers where they parse, else the raw text."""
    rows: list[tuple] = []
    for path in result.event_files:
        if path.endswith(".parquet"):
            table = pq.read_table(path)
            seconds = table.column("event_time").cast(pa.timestamp("s", tz="UTC"))
            table = table.set_column(3, "event_time", pc.strftime(seconds, format=ISO))
            rows += zip(*(table.column(c).to_pylist() for c in EVENT_COLUMNS), strict=True)
        elif path.endswith(".csv.gz"):
            with gzip.open(path, "rt", newline="") as fh:
                reader = csv.reader(fh)
                assert next(reader) == list(EVENT_COLUMNS)
                rows += [_typed(dict(zip(EVENT_COLUMNS, r, strict=True))) for r in reader]
        else:
            with gzip.open(path, "rt") as fh:
                for line in fh:
                    record = json.loads(line)
                    assert list(record) == list(EVENT_COLUMNS)
                    rows.append(_typed(record))
    return rows


def _typed(record: dict) -> tuple:
    def number(value, kind):
        try:
            return kind(value)
        except (TypeError, ValueError):
            return value

    record = dict(record, price=number(record["price"], float), quantity=number(record["quantity"], int))
    return tuple(record[c] for c in EVENT_COLUMNS)


def is_bad(row: tuple, previous: tuple | None) -> bool:
    """Would the ingest quarantine reject this row? (The generator's bad-row kinds.)"""
    user, _item, event_type, ts, session, _device, _country, price, quantity = row
    if user == "" and session == "":
        return True
    if event_type not in EVENT_TYPES or not isinstance(price, float) or ts == "not-a-date":
        return True
    if event_type == "purchase" and price <= 0:
        return True
    return ts >= "2099" or quantity == 0 or row == previous


def count_bad(rows: list[tuple]) -> int:
    return sum(is_bad(row, rows[i - 1] if i else None) for i, row in enumerate(rows))


def read_catalog(result: GeneratorResult) -> list[dict]:
    with open(result.catalog_file, newline="") as fh:
        assert fh.readline().strip() == "item_id,title,description,category,price"
        fh.seek(0)
        return list(csv.DictReader(fh))


def file_digest(path: str) -> str:
    """Digest of a file's data: decompressed text, or the Parquet table content."""
    if path.endswith(".parquet"):
        sink = pa.BufferOutputStream()
        table = pq.read_table(path)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def digests(result: GeneratorResult) -> list[str]:
    return [file_digest(p) for p in (*result.event_files, result.catalog_file)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[GeneratorResult, pa.Table]:
    """200k events over a year: enough for the skew and time-pattern statistics."""
    result = generate(
        str(tmp_path_factory.mktemp("big")), users=20_000, items=2_000, events=200_000, seed=7, events_per_file=80_000
    )
    return result, read_parquet(result)


@pytest.fixture(scope="module")
def big_df(big) -> pd.DataFrame:
    return big[1].to_pandas()


# ---------------------------------------------------------------- files and columns


def test_parquet_files_rows_and_schema(big):
    result, table = big
    assert result.events == table.num_rows == 200_000
    assert result.bad_rows == 0 and result.users == 20_000 and result.items == 2_000 and result.seconds > 0
    assert [os.path.basename(f) for f in result.event_files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [pq.read_metadata(f).num_rows for f in result.event_files] == [80_000, 80_000, 40_000]
    assert all(os.path.isabs(f) for f in (*result.event_files, result.catalog_file))
    assert sorted(os.listdir(os.path.join(result.out_dir, "events"))) == [
        os.path.basename(f) for f in result.event_files
    ]  # no temp files left behind
    for path in result.event_files:
        assert pq.read_schema(path).remove_metadata() == PARQUET_SCHEMA


def test_column_values_follow_the_contract(big, big_df):
    _, table = big
    for name, pattern in (("user_id", r"^u\d{7}$"), ("item_id", r"^i\d{6}$"), ("session_id", r"^s\d{11}$")):
        assert pc.all(pc.match_substring_regex(table.column(name), pattern)).as_py(), name
    df = big_df
    assert set(df.event_type) == EVENT_TYPES
    assert set(df.device) == DEVICES
    assert 10 <= df.country.nunique() <= 20
    assert df.country.value_counts().index[0] == "United Kingdom"
    assert (df.price > 0).all()
    assert (df.quantity[df.event_type != "purchase"] == 1).all()
    assert df.quantity[df.event_type == "purchase"].between(1, 10).all()
    assert df.user_id.str[1:].astype(int).max() < 20_000
    assert df.item_id.str[1:].astype(int).max() < 2_000


def test_timestamps_within_the_requested_days(big):
    _, table = big
    bounds = pc.min_max(table.column("event_time")).as_py()
    assert bounds["min"] >= datetime(2023, 1, 1, tzinfo=UTC)
    assert bounds["max"] < datetime(2024, 1, 1, tzinfo=UTC)


def test_short_custom_date_range(tmp_path):
    result = generate(str(tmp_path), users=100, items=50, events=5_000, start_date="2024-02-27", days=3)
    times = read_parquet(result).column("event_time").to_pylist()
    assert min(times) >= datetime(2024, 2, 27, tzinfo=UTC)
    assert max(times) < datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_hold_the_same_events_as_parquet(tmp_path, fmt):
    parquet = generate(str(tmp_path / "p"), users=500, items=300, events=12_345, events_per_file=5_000)
    text = generate(str(tmp_path / fmt), users=500, items=300, events=12_345, events_per_file=5_000, fmt=fmt)
    assert [os.path.basename(f) for f in text.event_files] == [f"part-{i:05d}.{fmt}.gz" for i in range(3)]
    rows = read_rows(text)
    assert len(rows) == 12_345
    assert rows == read_rows(parquet)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[3]) for r in rows)


def test_exact_count_across_chunks_and_files(tmp_path, monkeypatch):
    # Small chunks so that chunk and file boundaries fall at different rows.
    monkeypatch.setattr(gen, "CHUNK_EVENTS", 1_000)
    seen = []
    result = generate(
        str(tmp_path),
        users=300,
        items=100,
        events=5_500,
        events_per_file=1_500,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert [pq.read_metadata(f).num_rows for f in result.event_files] == [1_500, 1_500, 1_500, 1_000]
    table = read_parquet(result)
    assert table.num_rows == 5_500
    assert seen[-1] == (5_500, 5_500) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # A session never continues in another chunk's numbering: ids grow along the log.
    sessions = table.column("session_id").to_pylist()
    assert sessions == sorted(sessions)


@pytest.mark.parametrize("events", [1, 7])
def test_tiny_runs(tmp_path, events):
    result = generate(str(tmp_path), users=1, items=1, events=events, days=1)
    table = read_parquet(result)
    assert table.num_rows == events
    assert set(table.column("user_id").to_pylist()) == {"u0000000"}
    assert set(table.column("item_id").to_pylist()) == {"i000000"}


def test_rerun_replaces_earlier_files(tmp_path):
    generate(str(tmp_path), users=50, items=20, events=3_000, events_per_file=1_000)
    result = generate(str(tmp_path), users=50, items=20, events=3_000, events_per_file=5_000)
    assert sorted(os.listdir(tmp_path / "events")) == ["part-00000.parquet"]
    assert read_parquet(result).num_rows == 3_000


# ---------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    args = {"users": 400, "items": 150, "events": 8_000, "events_per_file": 3_000}
    first = generate(str(tmp_path / "a"), seed=3, **args)
    again = generate(str(tmp_path / "b"), seed=3, **args)
    other = generate(str(tmp_path / "c"), seed=4, **args)
    assert digests(first) == digests(again)
    assert digests(first)[0] != digests(other)[0]
    assert digests(first)[-1] != digests(other)[-1]  # the catalog too


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_are_deterministic_with_bad_rows(tmp_path, fmt):
    args = {"users": 300, "items": 100, "events": 6_000, "fmt": fmt, "bad_row_rate": 0.05, "seed": 11}
    assert digests(generate(str(tmp_path / "a"), **args)) == digests(generate(str(tmp_path / "b"), **args))


# ---------------------------------------------------------------- realism


def test_item_and_user_popularity_follow_a_power_law(big_df):
    items = big_df.item_id.value_counts()
    assert items.iloc[:200].sum() / len(big_df) > 0.40  # top 10% of the 2,000 items
    users = big_df.user_id.value_counts()
    assert users.iloc[:2_000].sum() / len(big_df) > 0.30  # top 10% of the 20,000 users
    assert users.iloc[0] > 20 * users.iloc[len(users) // 2]


def test_every_user_can_appear(tmp_path):
    result = generate(str(tmp_path), users=40, items=30, events=20_000)
    users = set(read_parquet(result).column("user_id").to_pylist())
    assert users == {f"u{i:07d}" for i in range(40)}


def test_funnel_and_sessions(big_df):
    df = big_df
    types = df.event_type.value_counts()
    assert types["view"] > types["cart"] > types["purchase"] > 0
    assert 0.07 < types["cart"] / len(df) < 0.13
    assert 0.015 < types["purchase"] / len(df) < 0.05

    sessions = df.groupby("session_id", sort=False)
    assert 4.0 < len(df) / sessions.ngroups < 6.0
    assert (sessions.user_id.nunique() == 1).all() and (sessions.device.nunique() == 1).all()
    # A session's events are consecutive rows, seconds to minutes apart, in time order.
    same = df.session_id == df.session_id.shift()
    assert (~same).sum() == sessions.ngroups
    gaps = df.event_time.diff()[same]
    assert (gaps >= pd.Timedelta(seconds=1)).all() and (gaps <= pd.Timedelta(minutes=15)).all()
    # A purchase is normally of an item viewed or carted earlier in the session.
    df = df.assign(order=range(len(df)))
    looked = df[df.event_type != "purchase"].groupby(["session_id", "item_id"]).order.min()
    bought = df[df.event_type == "purchase"]
    first_look = looked.reindex(pd.MultiIndex.from_frame(bought[["session_id", "item_id"]])).to_numpy()
    assert (first_look < bought.order.to_numpy()).mean() > 0.85


def test_country_is_fixed_per_user(big_df):
    assert (big_df.groupby("user_id").country.nunique() == 1).all()


def test_sessions_mostly_stay_in_one_or_two_categories(big, big_df):
    result, _ = big
    category = {r["item_id"]: r["category"] for r in read_catalog(result)}
    sessions = big_df.assign(category=big_df.item_id.map(category)).groupby("session_id").category
    long_sessions = sessions.size() >= 6
    assert (sessions.nunique()[long_sessions] <= 2).mean() > 0.6


def test_time_of_day_weekday_and_season(big_df):
    times = big_df.event_time
    hours = times.dt.hour.value_counts()
    assert hours[12] > 5 * hours[3] and hours[20] > 5 * hours[3]
    assert hours[20] > hours[16] and hours[12] > hours[9]
    per_day = times.dt.floor("D").value_counts()
    weekend = per_day.index.dayofweek >= 5
    assert per_day[weekend].mean() > 1.05 * per_day[~weekend].mean()
    season = per_day.index.month >= 11
    assert per_day[season].mean() > 1.3 * per_day[~season].mean()


# ---------------------------------------------------------------- bad rows


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_bad_rows_are_counted_exactly(tmp_path, fmt):
    result = generate(
        str(tmp_path), users=500, items=200, events=40_000, fmt=fmt, bad_row_rate=0.05, events_per_file=15_000
    )
    rows = read_rows(result)
    assert len(rows) == result.events == 40_000
    assert 1_600 < result.bad_rows < 2_400
    assert count_bad(rows) == result.bad_rows
    # Every kind of damage shows up, in every file.
    kinds = Counter()
    for i, (user, _, event_type, ts, session, _, _, price, quantity) in enumerate(rows):
        kinds["missing key"] += user == "" and session == ""
        kinds["unknown type"] += event_type == "clicked"
        kinds["bad purchase price"] += event_type == "purchase" and isinstance(price, float) and price <= 0
        kinds["future"] += ts.startswith("2099")
        kinds["zero quantity"] += quantity == 0
        kinds["duplicate"] += i > 0 and rows[i] == rows[i - 1]
        kinds["unparsable price"] += price == "abc"
        kinds["unparsable time"] += ts == "not-a-date"
    expected = 8 if fmt != "parquet" else 6
    assert sum(1 for n in kinds.values() if n > 0) == expected, kinds
    for path in result.event_files:
        assert count_bad(read_rows(GeneratorResult(**{**result.__dict__, "event_files": (path,)}))) > 0


def test_no_bad_rows_by_default(tmp_path):
    result = generate(str(tmp_path), users=300, items=100, events=20_000, fmt="csv")
    assert result.bad_rows == 0
    assert count_bad(read_rows(result)) == 0


def test_bad_parquet_rows_keep_their_types(tmp_path):
    result = generate(str(tmp_path), users=100, items=50, events=5_000, bad_row_rate=0.2)
    assert read_parquet(result).schema.remove_metadata() == PARQUET_SCHEMA


# ---------------------------------------------------------------- catalog


def test_catalog_has_one_described_row_per_item(big):
    result, _ = big
    rows = read_catalog(result)
    assert [r["item_id"] for r in rows] == [f"i{i:06d}" for i in range(2_000)]
    assert all(r["title"].strip() and r["description"].strip() and r["category"].strip() for r in rows)
    assert all(float(r["price"]) > 0 for r in rows)
    categories = Counter(r["category"] for r in rows)
    assert 15 <= len(categories) <= 25
    # Items of one category share their words: a category's descriptions use a small
    # vocabulary, and its most common noun is in many of them.
    for category in categories:
        words = [set(re.findall(r"[a-z]+", r["description"].lower())) for r in rows if r["category"] == category]
        vocabulary = set().union(*words)
        assert len(vocabulary) < 120
    title = rows[0]["title"].split()
    assert len(title) >= 4 and all(w[0].isupper() for w in title)


def test_catalog_prices_differ_by_category(big):
    result, _ = big
    by_category: dict[str, list[float]] = {}
    for r in read_catalog(result):
        by_category.setdefault(r["category"], []).append(float(r["price"]))
    medians = sorted(sorted(p)[len(p) // 2] for p in by_category.values())
    assert medians[-1] > 3 * medians[0]


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "change, message",
    [
        ({"users": 0}, "users"),
        ({"items": 0}, "items"),
        ({"events": 0}, "events"),
        ({"events": -5}, "events"),
        ({"fmt": "xlsx"}, "fmt"),
        ({"bad_row_rate": 0.6}, "bad_row_rate"),
        ({"bad_row_rate": -0.1}, "bad_row_rate"),
        ({"days": 0}, "days"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"seed": -1}, "seed"),
        ({"events_per_file": 0}, "events_per_file"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, change, message):
    args = {"out_dir": str(tmp_path / "out"), "users": 10, "items": 10, "events": 10, **change}
    with pytest.raises(ValueError, match=message):
        generate(**args)
    assert not (tmp_path / "out").exists()
