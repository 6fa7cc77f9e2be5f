"""The HTTP API (FastAPI): recommendations with the request's context, bundles, similar items,
events in, health and metrics. ``shoprec serve`` runs it on uvicorn (docs/serving.md).

Ids are opaque strings: they are looked up in in-memory maps and never reach a path, a query
or a shell; a posted event reaches the landing folder as the JSON it was, in a file whose
name the server picks, or the stream's Kafka topic as one message (stream.source=kafka).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from shoprec.config import Config
from shoprec.serving import answer as A
from shoprec.serving import events as EV
from shoprec.serving.kafka_sink import KafkaSink
from shoprec.serving.metrics import Metrics
from shoprec.serving.session import Sessions
from shoprec.serving.snapshot import Follower, Snapshot

log = logging.getLogger(__name__)

MAX_K = 100
UserId = Annotated[str, Path(min_length=1, max_length=256, description="opaque id")]
ItemId = Annotated[str, Path(min_length=1, max_length=256, description="opaque id")]


def _json(body: Any, status: int = 200) -> Response:
    # json.dumps straight to bytes: no response model, this path is the hot one.
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status, media_type="application/json")


def _unknown_parameters(request: Request, allowed: frozenset[str]) -> None:
    """422 naming every query parameter the route does not take (FastAPI ignores them)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["query", name],
                    "msg": f"unknown parameter (takes: {', '.join(sorted(allowed)) or 'none'})",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ],
        )


class _Timing:
    """ASGI middleware: every request counted and timed by its route template (never the raw
    path: ids would blow up the metric's label set)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", ""), label, status[0], time.perf_counter() - t0)


class State:
    """What the routes share: config, the snapshot follower, sessions, metrics, and the Kafka
    producer when the stream reads Kafka."""

    def __init__(self, cfg: Config, follow: bool = True):
        self.cfg = cfg
        self.follower = Follower(cfg)
        self.sessions = Sessions(cfg.serve.session_minutes)
        self.metrics = Metrics()
        self.kafka = KafkaSink(cfg) if cfg.stream.source == "kafka" else None  # its producer: on the first POST
        self.follow = follow
        self._first = threading.Event()

    def snapshot(self) -> Snapshot:
        snap = self.follower.snapshot
        if snap is None:
            raise HTTPException(503, f"no snapshot loaded yet: {self.follower.error or 'loading'}")
        return snap

    def start(self) -> None:
        if self.follow:
            self.follower.start()  # its first tick loads the first snapshot
        else:
            self.follower.refresh()

    def stop(self) -> None:
        self.follower.stop()
        if self.kafka is not None:
            self.kafka.close()


async def _posted_events(request: Request, most: int) -> list:
    """The body: a JSON array of at most ``most`` events (422 otherwise)."""
    try:
        posted = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": f"not JSON: {exc}", "type": "json_invalid"}]) from None
    if not isinstance(posted, list):
        raise HTTPException(422, [{"loc": ["body"], "msg": "a JSON array of events", "type": "list_type"}])
    if len(posted) > most:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body"],
                    "msg": f"at most {most} events per request",
                    "type": "too_long",
                }
            ],
        )
    return posted


async def _produce(sink: KafkaSink, metrics: Metrics, good: list[EV.Accepted], rejected: list[dict]) -> Response | None:
    """The good events to Kafka; the 503 answer when the broker did not ack them all."""
    delivery = await run_in_threadpool(sink.send, good)  # waits for acks: off the event loop
    metrics.produced(delivery.delivered, delivery.failed)
    if delivery.ok:
        return None
    acked = delivery.delivered
    after = (
        f"the {acked} acked are in the topic, so posting all again adds copies (the stream marks them DUPLICATE)"
        if acked
        else "post them again once the brokers answer"
    )
    line = (
        f"Kafka topic {sink.topic!r} at {sink.scrub(sink.servers)} acked {acked} of {delivery.sent} events: "
        f"{delivery.error}; none is in the session, {after}"
    )
    log.warning("POST /v1/events: %s", line)
    body = {"detail": line, "delivered": delivery.delivered, "rejected": rejected}
    return _json(body, 503)


def create_app(cfg: Config, follow: bool = True) -> FastAPI:
    state = State(cfg, follow)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        yield
        state.stop()

    app = FastAPI(
        title="shoprec",
        version="1",
        summary="Recommendations with the request's context, bundles, similar items and events in.",
        lifespan=lifespan,
    )
    app.state.shoprec = state

    @app.get("/v1/users/{user_id:path}/recommendations", tags=["recommendations"])
    async def recommendations(
        request: Request,
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="list length")] = 10,
        at: Annotated[
            datetime | None, Query(description="the moment the list is shown (ISO 8601; naive: UTC); default now")
        ] = None,
        device: Annotated[str | None, Query(max_length=64)] = None,
        country: Annotated[str | None, Query(max_length=64, description="default: the user's country")] = None,
    ) -> Response:
        """The user's list for this moment: live (the stream's), batch or the cold-start list,
        re-ranked for the request's time and the user's session."""
        _unknown_parameters(request, frozenset({"k", "at", "device", "country"}))
        snap = state.snapshot()
        moment = at or datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        got = A.answer(snap, user_id, k, moment, country, state.sessions.events(user_id), cfg.serve)
        body = got.to_json(snap)
        body["context"] = {"at": moment.isoformat(), "device": device, "country": got.country}
        return _json(body)

    @app.get("/v1/items/{item_id:path}/bundles", tags=["items"])
    async def item_bundles(request: Request, item_id: ItemId, k: Annotated[int, Query(ge=1, le=MAX_K)] = 5) -> Response:
        """Items bought together with this one (gold.bundle_partners), with the rule's
        confidence, lift and support."""
        _unknown_parameters(request, frozenset({"k"}))
        snap = state.snapshot()
        partners = A.bundles(snap, item_id, k)
        if partners is None:
            partners = []  # known item without partners, or unknown: both have none
        return _json({"item_id": item_id, "description": snap.items.description.get(item_id), "bundles": partners})

    @app.get("/v1/items/{item_id:path}/similar", tags=["items"])
    async def item_similar(
        request: Request, item_id: ItemId, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10
    ) -> Response:
        """Items whose descriptions are closest (cosine of the learned text vectors)."""
        _unknown_parameters(request, frozenset({"k"}))
        snap = state.snapshot()
        found = A.similar(snap, item_id, k)
        if found is None:
            raise HTTPException(404, f"item {item_id!r} has no description vector in this snapshot")
        desc = snap.items.description
        return _json(
            {
                "item_id": item_id,
                "description": desc.get(item_id),
                "similar": [
                    {"item_id": i, "rank": n, "similarity": round(s, 6), "description": desc.get(i)}
                    for n, (i, s) in enumerate(found, start=1)
                ],
            }
        )

    @app.post("/v1/events", tags=["events"], status_code=202)
    async def post_events(request: Request) -> Response:
        """A JSON array of events in the event-log schema (``ingest.event_log_columns``): each
        is checked, the good ones are written to the stream's source (the landing folder, or
        the Kafka topic: 503 unless the broker acked them all) and update the user's session at
        once; 422 lists the bad ones (the good ones are still accepted)."""
        _unknown_parameters(request, frozenset())
        posted = await _posted_events(request, cfg.serve.max_events_per_request)
        now = datetime.now(UTC)
        checked = [EV.check(e, i, cfg.ingest, now) for i, e in enumerate(posted)]
        good = [c for c in checked if isinstance(c, EV.Accepted)]
        bad = [c for c in checked if isinstance(c, EV.Rejected)]
        rejected = [b.to_json() for b in bad]
        if state.kafka is not None:
            refused = await _produce(state.kafka, state.metrics, good, rejected)
            if refused is not None:
                state.metrics.events(0, len(bad))
                return refused
            landed = bool(good)
        else:
            landed = bool(EV.land(cfg, good))
        # Only after the source holds them: a session must not show what the stream will never see.
        for g in good:
            if g.user_id is not None:
                state.sessions.add(g.user_id, g.item_id, g.event_type)
        state.metrics.events(len(good), len(bad))
        body = {"accepted": len(good), "rejected": rejected, "landed": landed}
        return _json(body, 422 if bad else 202)

    @app.get("/health", tags=["ops"])
    async def health() -> Response:
        """200 once a snapshot is loaded (503 before, with why)."""
        snap = state.follower.snapshot
        if snap is None:
            return _json({"status": "loading", "error": state.follower.error}, 503)
        return _json(
            {
                "status": "ready",
                "snapshot": snap.sequence,
                "versions": snap.versions,
                "as_of": snap.as_of.isoformat() if snap.as_of else None,
                "users": len(snap.batch),
                "live_users": len(snap.live),
                "age_s": round(time.time() - snap.loaded_at, 3),
            }
        )

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text: requests, latency histograms, events, snapshot version and age."""
        snap = state.follower.snapshot
        gauges = {
            "shoprec_snapshot_loaded": 1.0 if snap is not None else 0.0,
            "shoprec_snapshot_sequence": float(snap.sequence) if snap else 0.0,
            "shoprec_snapshot_age_seconds": time.time() - snap.loaded_at if snap else 0.0,
            "shoprec_snapshot_load_seconds": snap.seconds if snap else 0.0,
            "shoprec_snapshot_users": float(len(snap.batch)) if snap else 0.0,
            "shoprec_snapshot_live_users": float(len(snap.live)) if snap else 0.0,
            "shoprec_sessions": float(len(state.sessions)),
        }
        if snap is not None:
            gauges.update({f'shoprec_table_version{{table="{t}"}}': float(v) for t, v in sorted(snap.versions.items())})
        return PlainTextResponse(state.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, exc.status_code)

    app.add_middleware(_Timing, metrics=state.metrics)
    return app
