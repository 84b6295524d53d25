"""`recsys serve`: the Recommender over HTTP (FastAPI on uvicorn), for pages not rendered in Python.

Every endpoint answers through the same `Recommender` as in-process calls (same lists, reasons,
A/B variants and exposure log). The service follows the model directory's CURRENT pointer and
hot-reloads in the background (calls in flight finish on the old model). Bad requests get a
4xx with a JSON body naming the field: `{"error": "...", "field": "n"}`. Prometheus metrics are
on `/metrics`, OpenAPI docs on `/docs`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field

from recsys.answer import RecommendationList
from recsys.errors import ModelDirError
from serving.recommender import Recommender

log = logging.getLogger(__name__)

# Environment of `recsys serve`'s worker processes (uvicorn starts each from an import string).
ENV_MODELS = "RECSYS_MODELS"
ENV_REDIS = "RECSYS_REDIS_URL"
ENV_API_KEY = "RECSYS_API_KEY"
ENV_EXPOSURES = "RECSYS_EXPOSURES"
ENV_RELOAD = "RECSYS_RELOAD_SECONDS"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class BadRequest(ValueError):
    """A request field the service cannot use (400, naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Event(BaseModel):
    """One live event, as `Recommender.record_event` takes it."""

    user: str | int | None = Field(None, description="the shop's user id (or visitor)")
    visitor: str | int | None = Field(None, description="an anonymous visitor's id")
    item: str | int = Field(description="the shop's item id")
    event_type: str = Field(description="view, cart, favourite, purchase or return")
    timestamp: float | None = Field(None, description="Unix seconds (default: now)")
    quantity: float | None = None


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "recsys_requests", "Requests by endpoint and status", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "recsys_request_seconds", "Request latency by endpoint", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "recsys_fallbacks", "Answers for visitors the model does not know", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.reloads = Counter(
            "recsys_reloads", "Model reload checks by result", ["result"], registry=self.registry
        )
        self.errors = Counter(
            "recsys_errors", "Requests that failed on the server", ["endpoint"],
            registry=self.registry,
        )  # fmt: skip
        self.events = Counter("recsys_live_events", "Live events recorded", registry=self.registry)
        self.live_errors = Gauge(
            "recsys_live_store_errors", "Failed or timed-out calls to the live-event store",
            registry=self.registry,
        )  # fmt: skip
        self.model_age = Gauge(
            "recsys_model_age_seconds", "Seconds since the served model was trained",
            registry=self.registry,
        )  # fmt: skip


def create_app(
    recommender: Recommender,
    *,
    api_key: str | None = None,
    reload_seconds: float = 30.0,
) -> FastAPI:
    """The HTTP service over a loaded Recommender; `api_key` guards POST /events (X-API-Key)."""
    metrics = Metrics()
    stop = threading.Event()

    def follow_current() -> None:
        # CURRENT may move at any time: check it every few seconds, swap atomically.
        while not stop.wait(reload_seconds):
            try:
                switched = recommender.reload()
                metrics.reloads.labels("switched" if switched else "unchanged").inc()
            except (ModelDirError, OSError, ValueError) as error:
                metrics.reloads.labels("failed").inc()
                log.error("reload failed, still serving %s: %s", recommender.version, error)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = None
        if reload_seconds > 0:
            watcher = threading.Thread(target=follow_current, name="recsys-reload", daemon=True)
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=5)

    app = FastAPI(
        title="recsys",
        summary="Personalised product recommendations for a shop",
        lifespan=lifespan,
    )
    app.state.recommender = recommender
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        # FastAPI names a union's member in the location ("Event", "list[Event]"): left out.
        where = [
            str(part)
            for part in first.get("loc", ())
            if part not in ("query", "body", "header")
            and not str(part)[:1].isupper()
            and not str(part).startswith("list[")
        ]
        field = ".".join(where) or "request"
        return _error(metrics, request, 422, f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(BadRequest)
    async def bad(request: Request, error: BadRequest) -> JSONResponse:
        return _error(metrics, request, 400, str(error), error.field)

    def timed(endpoint: str, answer: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            result = answer()
        except BadRequest:
            raise
        except ValueError as error:
            raise BadRequest(_field_of(str(error)), str(error)) from None
        except Exception:
            metrics.errors.labels(endpoint).inc()
            metrics.calls.labels(endpoint, "500").inc()
            raise
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        metrics.calls.labels(endpoint, "200").inc()
        return result

    @app.get("/recommend", summary="A visitor's top-n products, each with its source and reason")
    def recommend(
        user: str | None = Query(None, description="the shop's user id; none: anonymous"),
        n: int = Query(10, ge=1, description="how many items"),
        session: str | None = Query(None, description="this visit's item ids, comma-separated"),
        exclude: str | None = Query(None, description="item ids to leave out, comma-separated"),
        categories: str | None = Query(None, description="only these category ids"),
        available_only: bool | None = None,
        exclude_purchased: bool | None = None,
        max_per_category: int | None = Query(None, ge=0),
        visitor: str | None = Query(None, description="an anonymous visitor's id (A/B, live)"),
        now: int | None = Query(None, description="Unix seconds (default: the model's clock)"),
    ) -> dict[str, Any]:
        def answer() -> dict[str, Any]:
            model = recommender.model
            user_id = _query_id(user, model.users.dtype, "user")
            found = recommender.recommend(
                user_id,
                n,
                session_items=_item_ids(session, model.items.dtype, "session"),
                exclude=_item_ids(exclude, model.items.dtype, "exclude"),
                categories=_split(categories),
                available_only=available_only,
                exclude_purchased=exclude_purchased,
                max_per_category=max_per_category,
                now=now,
                visitor_id=visitor,
            )
            if not found.user_known:
                metrics.fallbacks.labels("anonymous" if user_id is None else "unknown_user").inc()
            return _listed(found)

        result: dict[str, Any] = timed("recommend", answer)
        return result

    def product_page(endpoint: str, item: str, n: int) -> dict[str, Any]:
        def answer() -> dict[str, Any]:
            item_id = _query_id(item, recommender.model.items.dtype, "item")
            pages = {"similar": recommender.similar_items, "complementary":
                     recommender.complementary_items}  # fmt: skip
            return _listed(pages[endpoint](item_id, n))

        result: dict[str, Any] = timed(endpoint, answer)
        return result

    @app.get("/similar", summary="Products viewed with this one, then same category or brand")
    def similar(item: str = Query(description="the shop's item id"), n: int = Query(10, ge=1)
                ) -> dict[str, Any]:  # fmt: skip
        return product_page("similar", item, n)

    @app.get("/complementary", summary="Products frequently bought with this one")
    def complementary(item: str = Query(description="the shop's item id"),
                      n: int = Query(10, ge=1)) -> dict[str, Any]:  # fmt: skip
        return product_page("complementary", item, n)

    @app.post("/events", summary="Record what visitors just did (one event or a list)")
    def events(
        body: Event | list[Event],
        x_api_key: str | None = Header(None, description="required when the service has a key"),
    ) -> dict[str, int]:
        if api_key is not None and x_api_key != api_key:
            metrics.calls.labels("events", "401").inc()
            raise _Unauthorized()
        batch = body if isinstance(body, list) else [body]

        def answer() -> dict[str, int]:
            model = recommender.model
            rows = []
            for position, event in enumerate(batch):
                field = f"{position}." if isinstance(body, list) else ""
                rows.append(
                    {
                        "user_id": _typed(event.user, model.users.dtype, f"{field}user"),
                        "visitor_id": event.visitor,
                        "item_id": _typed(event.item, model.items.dtype, f"{field}item"),
                        "event_type": event.event_type,
                        "timestamp": event.timestamp,
                        "quantity": event.quantity,
                    }
                )
            recorded = recommender.record_events(rows)
            metrics.events.inc(recorded)
            return {"recorded": recorded}

        result: dict[str, int] = timed("events", answer)
        return result

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, error: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"error": "missing or wrong API key", "field": "X-API-Key"}, status_code=401
        )

    @app.get("/healthz", summary="The model being served and its age")
    def healthz() -> dict[str, Any]:
        model = recommender.model
        age = max(time.time() - model.created, 0.0)
        metrics.model_age.set(age)
        return {
            "status": "ok",
            "model_version": model.version,
            "model_age_seconds": round(age, 1),
            "data_end": model.data_end,
            "users": len(model.users),
            "items": len(model.items),
        }

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus() -> Response:
        model = recommender.model
        metrics.model_age.set(max(time.time() - model.created, 0.0))
        metrics.live_errors.set(recommender.live.stats().errors)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """The app of one `recsys serve` worker, configured by environment variables."""
    from serving.exposures import JsonlExposureLog

    models = os.environ.get(ENV_MODELS)
    if not models:
        raise RuntimeError(f"{ENV_MODELS} is not set: start the service with `recsys serve`")
    exposures = os.environ.get(ENV_EXPOSURES)
    recommender = Recommender.load(
        models,
        exposures=JsonlExposureLog(exposures) if exposures else None,
        redis_url=os.environ.get(ENV_REDIS) or None,
    )
    return create_app(
        recommender,
        api_key=os.environ.get(ENV_API_KEY) or None,
        reload_seconds=float(os.environ.get(ENV_RELOAD, "30")),
    )


class _Unauthorized(Exception):
    pass


def _listed(found: RecommendationList) -> dict[str, Any]:
    return {
        "model_version": found.model_version,
        "user_known": found.user_known,
        "experiment": found.experiment,
        "variant": found.variant,
        "unknown_session_items": list(found.unknown_session_items),
        "items": [
            {"item": r.item_id, "score": r.score, "source": r.source, "reason": r.reason}
            for r in found
        ],
    }


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _query_id(value: str | None, dtype: str, field: str) -> Any:
    """A query parameter (a user or item id) as the model's id type (whole numbers for an
    integer-id shop)."""
    if value is None:
        return None
    return _typed(value.strip(), dtype, field)


def _typed(value: Any, dtype: str, field: str) -> Any:
    if value is None:
        return None
    if dtype == "int64":
        try:
            return int(str(value))
        except ValueError:
            message = f"{field}: ids of this shop are whole numbers (got {value!r})"
            raise BadRequest(field, message) from None
    return str(value)


def _item_ids(value: str | None, dtype: str, field: str) -> list[Any]:
    return [_typed(part, dtype, field) for part in _split(value) or []]


def _field_of(message: str) -> str:
    """The field a Recommender error is about, from its message ('n must be ...')."""
    head = message.split(" ", 1)[0].rstrip(":")
    for field in ("n", "user", "item", "session", "exclude", "categories", "timestamp"):
        if head == field or head.startswith(field):
            return field
    if message.startswith("event "):
        return message.split(":", 1)[0].replace("event ", "events.")
    return "request"


def _error(
    metrics: Metrics, request: Request, status: int, message: str, field: str
) -> JSONResponse:
    endpoint = request.url.path.strip("/") or "root"
    metrics.calls.labels(endpoint, str(status)).inc()
    return JSONResponse({"error": message, "field": field}, status_code=status)
