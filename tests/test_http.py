"""`recsys serve`: the same answers over HTTP, live events, hot reload, metrics, 4xx errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from serving import Recommender
from serving.http import create_app
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model, shop_config
from training.job import train

NOW = T0 + END_DAY * DAY


@pytest.fixture
def rec(shop_models: Path) -> Recommender:
    return Recommender.load(shop_models)


@pytest.fixture
def client(rec: Recommender) -> TestClient:
    return TestClient(create_app(rec, api_key="secret", reload_seconds=0))


def test_recommend_over_http_is_the_in_process_answer(client: TestClient, rec: Recommender) -> None:
    got = client.get("/recommend", params={"user": "7", "n": 5, "now": NOW})
    assert got.status_code == 200
    body = got.json()
    expected = rec.recommend(7, n=5, now=NOW)
    assert [i["item"] for i in body["items"]] == expected.item_ids
    assert [i["reason"] for i in body["items"]] == [r.reason for r in expected]
    assert body["user_known"] is True and body["model_version"] == rec.version


def test_an_anonymous_visit_and_filters_pass_through(client: TestClient, rec: Recommender) -> None:
    params: dict[str, Any] = {"session": "sku3,sku4", "exclude": "sku5", "n": 8, "now": NOW}
    body = client.get("/recommend", params=params).json()
    expected = rec.recommend(None, 8, session_items=["sku3", "sku4"], exclude=["sku5"], now=NOW)
    assert [i["item"] for i in body["items"]] == expected.item_ids
    assert "sku5" not in [i["item"] for i in body["items"]]


def test_product_pages_get_similar_and_complementary_items(client: TestClient) -> None:
    similar = client.get("/similar", params={"item": "sku3", "n": 4})
    complements = client.get("/complementary", params={"item": "sku3", "n": 4})
    assert similar.status_code == complements.status_code == 200
    assert "sku3" not in [i["item"] for i in similar.json()["items"]]
    assert len(similar.json()["items"]) == 4


def test_a_purchase_posted_is_gone_from_the_next_list(client: TestClient) -> None:
    params = {"user": "9", "n": 22, "now": NOW, "available_only": "false"}
    assert "sku-fridge" in [
        i["item"] for i in client.get("/recommend", params=params).json()["items"]
    ]
    event = {"user": 9, "item": "sku-fridge", "event_type": "purchase", "timestamp": NOW - 60}
    posted = client.post("/events", json=event, headers={"X-API-Key": "secret"})
    assert posted.status_code == 200 and posted.json() == {"recorded": 1}
    items = [i["item"] for i in client.get("/recommend", params=params).json()["items"]]
    assert "sku-fridge" not in items


def test_events_need_the_api_key(client: TestClient) -> None:
    event = {"user": 9, "item": "sku1", "event_type": "view"}
    refused = client.post("/events", json=[event])
    assert refused.status_code == 401
    assert refused.json()["field"] == "X-API-Key"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/recommend", {"user": "abc"}, "user"),
        ("/recommend", {"user": "7", "n": 0}, "n"),
        ("/recommend", {"user": "7", "n": "many"}, "n"),
        ("/recommend", {"user": "7", "n": 100000}, "n"),
        ("/recommend", {"max_per_category": -1}, "max_per_category"),
        ("/recommend", {"available_only": "perhaps"}, "available_only"),
        ("/similar", {}, "item"),
        ("/similar", {"item": "sku1", "n": -3}, "n"),
        ("/complementary", {"item": "sku1", "n": "x"}, "n"),
    ],
)
def test_a_bad_request_is_a_4xx_json_error_naming_the_field(
    client: TestClient, path: str, params: dict[str, Any], field: str
) -> None:
    got = client.get(path, params=params)
    assert 400 <= got.status_code < 500
    assert got.json()["field"] == field, got.json()
    assert got.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": 1, "item": "sku1", "event_type": "click"}, "events.0"),
        ({"user": 1, "event_type": "view"}, "item"),
        ([{"user": "x1", "item": "sku1", "event_type": "view"}], "0.user"),
        ({"user": 1, "item": "sku1", "event_type": "view", "timestamp": "soon"}, "timestamp"),
    ],
)
def test_a_bad_event_is_a_4xx_json_error_naming_the_field(
    client: TestClient, body: Any, field: str
) -> None:
    got = client.post("/events", json=body, headers={"X-API-Key": "secret"})
    assert 400 <= got.status_code < 500
    assert got.json()["field"].startswith(field.split(".")[0]), got.json()


def test_health_and_metrics_report_the_model_and_the_calls(client: TestClient) -> None:
    client.get("/recommend", params={"user": "7"})
    client.get("/recommend", params={"user": "123456"})
    client.get("/recommend", params={"n": 0})
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model_version"]
    text = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="recommend",status="200"}' in text
    assert 'recsys_requests_total{endpoint="recommend",status="422"}' in text
    assert 'recsys_fallbacks_total{kind="unknown_user"}' in text
    assert "recsys_request_seconds_bucket" in text


def test_the_openapi_docs_list_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/complementary", "/events", "/healthz", "/metrics"} <= set(
        paths
    )


def test_a_reload_under_load_fails_no_request(tmp_path: Path) -> None:
    root = build_shop_model(tmp_path)
    rec = Recommender.load(root)
    first = rec.version
    app = create_app(rec, reload_seconds=0.05)
    failures: list[int] = []
    calls = [0]
    done = threading.Event()

    def hammer(client: TestClient) -> None:
        while not done.is_set():
            got = client.get("/recommend", params={"user": "7", "n": 5})
            calls[0] += 1
            if got.status_code != 200 or len(got.json()["items"]) != 5:
                failures.append(got.status_code)

    with TestClient(app) as client:
        workers = [threading.Thread(target=hammer, args=(client,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        # The next nightly run publishes a new version while requests keep coming.
        train(shop_config(tmp_path), force=True)
        for _ in range(250):
            if rec.version != first:
                break
            time.sleep(0.02)
        time.sleep(0.2)
        done.set()
        for worker in workers:
            worker.join()
        assert rec.version != first
        assert 'recsys_reloads_total{result="switched"} 1.0' in client.get("/metrics").text
    assert calls[0] > 10
    assert failures == []


def test_recsys_serve_answers_on_its_port_and_stops_cleanly(shop_models: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RECSYS_API_KEY": "k"}
    server = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--models", str(shop_models),
         "--port", str(port), "--reload-seconds", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        body = None
        for _ in range(100):
            try:
                url = f"http://127.0.0.1:{port}/recommend?user=7&n=3"
                with urllib.request.urlopen(url, timeout=1) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None, "recsys serve did not answer"
        assert len(body["items"]) == 3 and body["user_known"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/events",
            data=json.dumps({"user": 7, "item": "sku2", "event_type": "view"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=2)
            raise AssertionError("POST /events without the key was accepted")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)
