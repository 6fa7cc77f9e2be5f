"""shoprec serve: the real server on a free loopback port, talked to over HTTP.

The lakehouse is written by hand with delta-rs (real Delta tables, a few rows each), so every
answer can be checked to the item: which list is served (live, batch, cold start), the
request-time context (the hour of ``at`` moves items with an hour profile), the session (a
carted item's partners lead, the item goes to the end), every 422, following new versions
without a restart, and the events' checks against the ingest's own quarantine."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from shoprec import columns as C
from shoprec.stages.ingest import run_ingest
from shoprec.stages.stream import landing_dir, stream_config
from shoprec.tables import open_tables
from tests.conftest import make_config, shoprec_command
from tests.serving import Server, call, free_port

AS_OF, OLDER = date(2011, 11, 1), date(2011, 10, 1)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
# Only the moment term, strong enough to reorder: items with an hour profile move.
SETTINGS = ("serve.refresh_seconds=0.2", "serve.season_weight=0", "serve.moment_weight=1")


def _table(
    root: Path, name: str, columns: dict[str, pa.Array] | pa.Table, partition: bool = True, mode: str = "overwrite"
) -> None:
    layer, table = name.split(".")
    data = columns if isinstance(columns, pa.Table) else pa.table(columns)
    write_deltalake(str(root / layer / table), data, partition_by=[C.AS_OF] if partition else None, mode=mode)


def _lists(key: str, rows: list[tuple], as_of: date, **extra: pa.Array) -> dict[str, pa.Array]:
    """(key, rank, item, score, source, reason, model_name, model_version) rows as columns."""
    cols = list(zip(*rows, strict=True))
    out = {
        key: pa.array(cols[0], pa.string()),
        C.RANK: pa.array(cols[1], pa.int32()),
        C.ITEM_ID: pa.array(cols[2], pa.string()),
        C.SCORE: pa.array(cols[3], pa.float64()),
        C.CANDIDATE_SOURCE: pa.array(cols[4], pa.string()),
        C.REASON: pa.array(cols[5], pa.string()),
        C.MODEL_NAME: pa.array(cols[6], pa.string()),
        C.MODEL_VERSION: pa.array(cols[7], pa.string()),
        C.AS_OF: pa.array([as_of] * len(rows), pa.date32()),
        C.GENERATED_AT: pa.array([NOW] * len(rows), pa.timestamp("us", tz="UTC")),
    }
    return {**out, **extra}


def _hybrid(user: str, items: list[tuple[str, float, str]]) -> list[tuple]:
    return [(user, n, i, s, src, f"reason {i}", "shoprec-hybrid", "3") for n, (i, s, src) in enumerate(items, 1)]


U1_LIST = [("I1", 0.9, "als"), ("MORNING", 0.5, "repeat"), ("EVENING", 0.5, "repeat"), ("I2", 0.4, "als")]


def _one_hot(n: int, at: int) -> list[float]:
    return [1.0 if b == at else 0.0 for b in range(n)]


def write_lakehouse(root: Path) -> None:
    _table(root, C.GOLD_RECOMMENDATIONS, _lists(C.USER_ID, _hybrid("u1", [("OLD", 0.9, "als")]), OLDER))
    _table(root, C.GOLD_RECOMMENDATIONS, _lists(C.USER_ID, _hybrid("u1", U1_LIST), AS_OF), mode="append")
    through = datetime(2011, 11, 3, 10, 0, tzinfo=UTC)
    live = _lists(
        C.USER_ID,
        _hybrid("u2", [("I3", 0.8, "als"), ("I4", 0.7, "bundle")]),
        AS_OF,
        **{C.EVENTS_THROUGH: pa.array([through, through], pa.timestamp("us", tz="UTC"))},
    )
    stale = _lists(
        C.USER_ID,
        _hybrid("u1", [("OLD", 0.99, "als")]),
        OLDER,
        **{C.EVENTS_THROUGH: pa.array([through], pa.timestamp("us", tz="UTC"))},
    )
    _table(root, C.GOLD_LIVE_RECOMMENDATIONS, pa.concat_tables([pa.table(live), pa.table(stale)]))
    cold = [
        ("France", 1, "I5", 3.0, "popular_context", "popular in France", "shoprec-cold-start", "2011-11-01"),
        ("France", 2, "I6", 2.0, "popular_context", "popular in France", "shoprec-cold-start", "2011-11-01"),
        ("*", 1, "I7", 5.0, "popular_context", "popular", "shoprec-cold-start", "2011-11-01"),
        ("*", 2, "I8", 4.0, "popular_context", "popular", "shoprec-cold-start", "2011-11-01"),
        ("*", 3, "I1", 3.5, "popular_context", "popular", "shoprec-cold-start", "2011-11-01"),
    ]
    _table(root, C.GOLD_COLD_START_LISTS, _lists(C.LIST_KEY, cold, AS_OF))
    partners = [("I5", 1, "I6", 0.6), ("I5", 2, "I7", 0.3), ("I5", 3, "I1", 0.2), ("I1", 1, "I2", 0.5)]
    p = list(zip(*partners, strict=True))
    _table(
        root,
        C.GOLD_BUNDLE_PARTNERS,
        {
            C.ITEM_ID: pa.array(p[0], pa.string()),
            C.RANK: pa.array(p[1], pa.int32()),
            C.PARTNER_ITEM_ID: pa.array(p[2], pa.string()),
            C.RULE_CONFIDENCE: pa.array(p[3], pa.float64()),
            C.LIFT: pa.array([2.0] * 4, pa.float64()),
            C.SUPPORT: pa.array([0.01] * 4, pa.float64()),
            C.BASKET_COUNT: pa.array([5] * 4, pa.int64()),
            C.AS_OF: pa.array([AS_OF] * 4, pa.date32()),
        },
    )
    vectors = {"I1": [1.0, 0.0], "I2": [0.9, 0.1], "I3": [0.0, 1.0], "I5": [0.7, 0.7], "I6": [-1.0, 0.0]}
    _table(
        root,
        C.GOLD_ITEM_FEATURES,
        {
            C.ITEM_ID: pa.array(list(vectors), pa.string()),
            C.DESCRIPTION: pa.array([f"ITEM {i}" for i in vectors], pa.string()),
            C.TEXT_VECTOR: pa.array(list(vectors.values()), pa.list_(pa.float64())),
            C.AS_OF: pa.array([AS_OF] * len(vectors), pa.date32()),
        },
    )
    _table(
        root,
        C.GOLD_ITEM_TIME_PROFILES,
        {
            C.ITEM_ID: pa.array(["MORNING", "EVENING"], pa.string()),
            C.MONTH_INDEX: pa.array([[1.0] * 12] * 2, pa.list_(pa.float64())),
            C.SEASONAL_LIFT: pa.array([0.0, 0.0], pa.float64()),
            C.HOUR_SHARE: pa.array([_one_hot(24, 10), _one_hot(24, 20)], pa.list_(pa.float64())),
            C.WEEKDAY_SHARE: pa.array([[1 / 7] * 7] * 2, pa.list_(pa.float64())),
            C.N_LINES: pa.array([1000, 1000], pa.int64()),
            C.AS_OF: pa.array([AS_OF] * 2, pa.date32()),
        },
    )
    items = ["I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "MORNING", "EVENING"]
    _table(
        root,
        C.SILVER_ITEMS,
        {C.ITEM_ID: pa.array(items, pa.string()), C.DESCRIPTION: pa.array([f"ITEM {i}" for i in items], pa.string())},
        partition=False,
    )
    _table(
        root,
        C.SILVER_USERS,
        {C.USER_ID: pa.array(["u1", "u2"], pa.string()), C.COUNTRY: pa.array(["France", "Iceland"], pa.string())},
        partition=False,
    )


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "lakehouse"
    write_lakehouse(root)
    return root


@pytest.fixture(scope="module")
def server(lakehouse, tmp_path_factory):
    with Server(shoprec_command(["serve"], lakehouse, *SETTINGS), tmp_path_factory.mktemp("log") / "serve.log") as s:
        s.wait()
        yield s


def _items(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_batch_list_newest_as_of_reranked_for_the_requests_hour(server):
    status, body = call(server.url + "/v1/users/u1/recommendations?k=4&at=2011-12-05T10:30:00Z")
    assert status == 200, body
    assert body["served_from"] == "batch" and body["as_of"] == "2011-11-01" and body["model_version"] == "3"
    assert body["events_through"] == "2011-11-01T00:00:00+00:00" and body["country"] == "France"
    assert _items(body) == ["I1", "MORNING", "I2", "EVENING"]  # 10:30 UTC: the morning item up
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4]
    assert body["items"][0] == {
        "item_id": "I1",
        "rank": 1,
        "score": 0.9,
        "source": "als",
        "reason": "reason I1",
        "description": "ITEM I1",
    }
    _, evening = call(server.url + "/v1/users/u1/recommendations?k=4&at=2011-12-05T20:05:00%2B00:00")
    assert _items(evening) == ["I1", "EVENING", "I2", "MORNING"]
    # More than the list holds: the user's country's cold-start list after it.
    _, longer = call(server.url + "/v1/users/u1/recommendations?k=6&at=2011-12-05T10:30:00")
    assert _items(longer) == ["I1", "MORNING", "I2", "EVENING", "I5", "I6"]
    assert [i["source"] for i in longer["items"][4:]] == ["popular_context"] * 2


def test_live_list_wins_and_unknown_users_get_their_countrys_cold_start_list(server):
    _, live = call(server.url + "/v1/users/u2/recommendations?k=2")
    assert live["served_from"] == "live" and _items(live) == ["I3", "I4"]
    assert live["events_through"] == "2011-11-03T10:00:00+00:00"
    # A live list scored against an older batch than the one served loses to the batch list.
    _, stale = call(server.url + "/v1/users/u1/recommendations?k=1")
    assert stale["served_from"] == "batch" and _items(stale) == ["I1"]
    _, france = call(server.url + "/v1/users/new-user/recommendations?k=2&country=France&device=mobile")
    assert france["served_from"] == "cold_start" and _items(france) == ["I5", "I6"]
    assert france["model_version"] == "2011-11-01" and france["context"]["device"] == "mobile"
    _, elsewhere = call(server.url + "/v1/users/new-user/recommendations?k=3&country=Narnia")
    assert elsewhere["served_from"] == "cold_start" and _items(elsewhere) == ["I7", "I8", "I1"]
    # Ids are opaque: slashes, dots and quotes are just characters of an unknown id.
    for odd in ("..%2F..%2Fetc%2Fpasswd", "a'%20OR%201=1--", "x%22%3B%20rm%20-rf"):
        status, body = call(server.url + f"/v1/users/{odd}/recommendations?k=1")
        assert status == 200 and body["served_from"] == "cold_start", (odd, body)


def test_bundles_and_similar_items(server):
    _, b = call(server.url + "/v1/items/I5/bundles?k=2")
    assert [(x["item_id"], x["confidence"], x["lift"]) for x in b["bundles"]] == [("I6", 0.6, 2.0), ("I7", 0.3, 2.0)]
    _, s = call(server.url + "/v1/items/I1/similar?k=2")
    assert [x["item_id"] for x in s["similar"]] == ["I2", "I5"] and s["similar"][0]["similarity"] > 0.99
    status, missing = call(server.url + "/v1/items/nope/similar")
    assert status == 404 and "nope" in missing["detail"]
    _, none = call(server.url + "/v1/items/nope/bundles")
    assert none["bundles"] == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/users/u1/recommendations?k=0", "k"),
        ("/v1/users/u1/recommendations?k=101", "k"),
        ("/v1/users/u1/recommendations?k=ten", "k"),
        ("/v1/users/u1/recommendations?at=yesterday", "at"),
        ("/v1/users/u1/recommendations?device=" + "x" * 65, "device"),
        ("/v1/users/u1/recommendations?country=" + "x" * 65, "country"),
        ("/v1/users/u1/recommendations?user=u2", "user"),
        ("/v1/items/I1/bundles?k=0", "k"),
        ("/v1/items/I1/bundles?limit=3", "limit"),
        ("/v1/items/I1/similar?k=500", "k"),
        ("/v1/items/I1/similar?q=1", "q"),
    ],
)
def test_bad_requests_are_422_naming_the_field(server, path, field):
    status, body = call(server.url + path)
    assert status == 422, body
    assert [d["loc"] for d in body["detail"]] == [["query", field]]


def test_bad_event_bodies_are_422(server):
    for raw, msg in [(b"{not json", "not JSON"), (b'{"user_id": "u1"}', "a JSON array")]:
        status, body = call(server.url + "/v1/events", raw=raw)
        assert status == 422 and msg in body["detail"][0]["msg"], body
    status, body = call(server.url + "/v1/events?dry_run=1", body=[])
    assert status == 422 and body["detail"][0]["loc"] == ["query", "dry_run"]


def _event(**kw: object) -> dict:
    base: dict = {"user_id": "u1", "item_id": "I5", "event_type": "cart", "event_time": "2011-12-05 10:00:00"}
    return {k: v for k, v in {**base, **kw}.items() if v is not None}


# (event, reason) the ingest quarantines it for, in the ingest's rule order.
BAD_EVENTS = [
    (_event(item_id=""), "MISSING_KEY"),
    (_event(user_id=None), "MISSING_KEY"),
    (_event(event_type="like"), "INVALID_EVENT_TYPE"),
    (_event(event_time="soon"), "UNPARSABLE"),
    (_event(price="abc"), "UNPARSABLE"),
    (_event(quantity="two"), "UNPARSABLE"),
    (_event(event_time="1990-01-01 00:00:00"), "TIMESTAMP_OUT_OF_RANGE"),
    (_event(quantity=0), "ZERO_QUANTITY"),
    (_event(quantity=-2), "SIGN_MISMATCH"),
    (_event(price=-1.5), "NON_POSITIVE_PRICE"),
    (_event(event_type="purchase", price=0), "NON_POSITIVE_PRICE"),
    (_event(item_id="bad\u0001id"), "INVALID_ID"),
]


def test_posted_events_land_update_the_session_and_check_like_the_ingest(server, lakehouse, spark, tmp_path):
    good = [
        _event(user_id="u9", item_id="I5", event_type="cart"),
        _event(user_id="u9", item_id="I8", event_type="purchase", price=2.5, quantity=3),
    ]
    posted = [good[0], *(e for e, _ in BAD_EVENTS), good[1], 7, _event(colour="red")]
    status, body = call(server.url + "/v1/events", body=posted)
    assert status == 422 and body["accepted"] == 2 and body["landed"] is True
    expected = [(i + 1, r) for i, (_, r) in enumerate(BAD_EVENTS)]
    expected += [(len(posted) - 2, "MALFORMED"), (len(posted) - 1, "MALFORMED")]
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == expected
    assert "colour" in body["rejected"][-1]["detail"]

    # The very next request: the carted item's partners lead (I8, bought, has none), the
    # bought item goes last, the carted one is not filled back in.
    _, after = call(server.url + "/v1/users/u9/recommendations?k=5&country=Narnia")
    assert after["served_from"] == "cold_start"
    assert _items(after) == ["I6", "I7", "I1", "I8"]
    assert after["items"][0]["reason"] == "goes with ITEM I5 (in your basket)"
    assert after["items"][-1]["reason"] == "already in your basket"

    # The landed file holds exactly the good events, as posted.
    cfg = make_config(lakehouse)
    landing = Path(landing_dir(cfg))
    files = sorted(landing.glob("api-*.jsonl"))
    assert len(files) == 1 and not list(landing.glob(".*"))
    assert [json.loads(line) for line in files[0].read_text().splitlines()] == good

    # The ingest quarantines the same bad events for the same reasons (the unknown field is
    # the API's own rule: the ingest ignores extra keys).
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text("".join(json.dumps(e) + "\n" for e, _ in BAD_EVENTS) + "7\n")
    root = tmp_path / "ingest"
    tables = open_tables(spark, str(root), "local")
    report = run_ingest(spark, stream_config(make_config(root)), tables, inputs=[str(files[0]), str(bad_file)])
    assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (len(BAD_EVENTS) + 3, 2, len(BAD_EVENTS) + 1)
    q = tables.read(C.quarantine_table("event_log")).select(C.LINE_NUMBER, C.REASON).collect()
    by_line = sorted((r[C.LINE_NUMBER], r[C.REASON]) for r in q)
    assert by_line == [(n, r) for n, (_, r) in enumerate(BAD_EVENTS, 1)] + [(len(BAD_EVENTS) + 1, "MALFORMED")]


def test_follows_new_versions_without_a_restart(tmp_path):
    root = tmp_path / "moving"
    write_lakehouse(root)
    with Server(shoprec_command(["serve"], root, *SETTINGS), tmp_path / "serve.log") as s:
        first = s.wait()
        assert first["snapshot"] == 1
        _table(
            root,
            C.GOLD_RECOMMENDATIONS,
            _lists(C.USER_ID, _hybrid("u1", [("I8", 0.9, "als")]), AS_OF),
            mode="overwrite",
        )
        deadline = time.monotonic() + 30
        while call(s.url + "/health")[1]["snapshot"] == 1:
            assert time.monotonic() < deadline, "no new snapshot in 30 s"
            time.sleep(0.1)
        _, body = call(s.url + "/v1/users/u1/recommendations?k=1")
        assert _items(body) == ["I8"]
        _, metrics = call(s.url + "/metrics")
        assert 'shoprec_table_version{table="gold.recommendations"} 2' in metrics
        assert "shoprec_snapshot_sequence 2" in metrics
        assert 'route="/v1/users/{user_id:path}/recommendations",status="200"} 1' in metrics


def test_not_ready_until_a_snapshot_then_ready_and_loopback_only(tmp_path):
    root = tmp_path / "empty"
    with Server(shoprec_command(["serve"], root, *SETTINGS), tmp_path / "serve.log") as s:
        body = s.wait(ready=False)
        assert body["status"] == "loading" and "gold.recommendations" in body["error"]
        status, _ = call(s.url + "/v1/users/u1/recommendations")
        assert status == 503
        write_lakehouse(root)
        assert s.wait()["status"] == "ready"
        listening = [c.laddr for c in psutil.Process(s.proc.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
        status, docs = call(s.url + "/openapi.json")
        assert status == 200 and "/v1/users/{user_id}/recommendations" in docs["paths"], list(docs["paths"])


def test_events_are_503_in_one_line_and_not_in_the_session_when_kafka_is_unreachable(lakehouse, tmp_path):
    # Nothing listens on the port; the credentials must reach neither the answer nor the log.
    port, secret = free_port(), "pw-do-not-show-9f3c"
    settings = (
        *SETTINGS,
        "stream.source=kafka",
        "stream.kafka_topic=shop.events,shop.other",
        f"stream.kafka_bootstrap_servers=127.0.0.1:{port}",
        "stream.kafka_options.security.protocol=SASL_PLAINTEXT",
        "stream.kafka_options.sasl.mechanism=PLAIN",
        f'stream.kafka_options.sasl.jaas.config=PlainLoginModule required username="api" password="{secret}";',
        "serve.kafka_producer_options.sasl.username=api",
        f"serve.kafka_producer_options.sasl.password={secret}",
        "serve.kafka_timeout_s=1",
    )
    with Server(shoprec_command(["serve"], lakehouse, *settings), tmp_path / "serve.log") as s:
        s.wait()
        t0 = time.monotonic()
        status, body = call(s.url + "/v1/events", body=[_event(user_id="u8"), _event(user_id="u8", event_type="like")])
        waited = time.monotonic() - t0
        _, after = call(s.url + "/v1/users/u8/recommendations?k=3&country=Narnia")
        _, metrics = call(s.url + "/metrics")
    detail = body["detail"]
    assert status == 503 and "\n" not in detail, body
    assert "'shop.events'" in detail and f"127.0.0.1:{port}" in detail and "acked 0 of 1 events" in detail, detail
    assert body["delivered"] == 0 and [r["reason"] for r in body["rejected"]] == ["INVALID_EVENT_TYPE"]
    assert waited < 10, waited  # the timeout (1 s) and the report's way back, not librdkafka's defaults
    assert _items(after) == ["I7", "I8", "I1"] and all(i["reason"] == "popular" for i in after["items"])
    assert 'shoprec_kafka_events_total{outcome="failed"} 1' in metrics
    assert 'shoprec_events_total{outcome="accepted"} 0' in metrics
    assert secret not in json.dumps(body) and secret not in (tmp_path / "serve.log").read_text()


def test_serve_without_tables_or_on_a_taken_port_says_so_in_one_line(tmp_path):
    import subprocess

    port_holder = Server(shoprec_command(["serve"], tmp_path / "a", *SETTINGS), tmp_path / "a.log")
    try:
        port_holder.wait(ready=False)
        taken = subprocess.run(
            shoprec_command(["serve", "--port", str(port_holder.port)], tmp_path / "b", *SETTINGS),
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
    finally:
        port_holder.stop()
    assert taken.returncode == 2, taken.stderr
    lines = [x for x in taken.stderr.splitlines() if x.strip()]
    assert lines[0].startswith("shoprec serve: error: 127.0.0.1:") and "in use" in lines[0], taken.stderr
