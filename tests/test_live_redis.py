"""Live events shared in Redis: every worker sees them, and a dead Redis never fails a page.

Runs against a real `redis-server`: the one `.ci/run` starts (RECSYS_TEST_REDIS_URL), else one
started here when the binary is installed; skipped without either.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis")

from serving import Recommender
from serving.live import RedisLiveStore
from tests.serving_shop import DAY, END_DAY, T0

NOW = T0 + END_DAY * DAY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    given = os.environ.get("RECSYS_TEST_REDIS_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server here (.ci/run installs one)")
    port = _free_port()
    server = _start_server(port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _worker(models: Path, url: str, prefix: str) -> Recommender:
    rec = Recommender.load(models)
    return Recommender(models, rec.model, live=RedisLiveStore(url, rec.model.serving.live,
                                                               prefix=prefix))  # fmt: skip


def test_a_purchase_recorded_by_one_worker_is_gone_from_anothers_next_list(
    shop_models: Path, redis_url: str
) -> None:
    one, two = _worker(shop_models, redis_url, "t1:"), _worker(shop_models, redis_url, "t1:")
    one.live.clear()
    assert "sku-fridge" in two.recommend(9, n=22, now=NOW, available_only=False).item_ids
    one.record_event(9, "sku-fridge", "purchase", NOW - 60)
    assert "sku-fridge" not in two.recommend(9, n=22, now=NOW, available_only=False).item_ids
    assert two.live.stats().events == 1


def test_a_cart_recorded_in_redis_is_a_reminder_at_once(shop_models: Path, redis_url: str) -> None:
    one, two = _worker(shop_models, redis_url, "t2:"), _worker(shop_models, redis_url, "t2:")
    one.record_event(3, "sku19", "cart", NOW - 3600)
    found = {r.item_id: r for r in two.recommend(3, n=10, now=NOW)}
    assert found["sku19"].source == "reminder"


def test_redis_keeps_user_17_and_visitor_17_and_text_17_apart(
    shop_models: Path, redis_url: str
) -> None:
    store = RedisLiveStore(redis_url, prefix="t3:")
    store.clear()
    from serving.live import LiveEvent

    store.add(("user", 17), [LiveEvent("a", 0, 100, None)])
    store.add(("visitor", 17), [LiveEvent("b", 0, 100, None)])
    store.add(("user", "17"), [LiveEvent("c", 0, 100, None)])
    assert [e.item_id for e in store.of(("user", 17), now=100)] == ["a"]
    assert [e.item_id for e in store.of(("visitor", 17), now=100)] == ["b"]
    assert [e.item_id for e in store.of(("user", "17"), now=100)] == ["c"]


def test_redis_killed_mid_run_answers_go_on_from_the_model_and_nothing_is_raised(
    shop_models: Path,
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server here to kill")
    port = _free_port()
    server = _start_server(port)
    rec = _worker(shop_models, f"redis://127.0.0.1:{port}/0", "t4:")
    alone = Recommender.load(shop_models)
    rec.record_event(3, "sku19", "cart", NOW - 3600)
    assert "sku19" in rec.recommend(3, n=10, now=NOW).item_ids
    server.kill()
    server.wait(timeout=10)
    started = time.perf_counter()
    # the model alone answers: the same list as a recommender without live events
    assert rec.recommend(3, n=10, now=NOW).item_ids == alone.recommend(3, n=10, now=NOW).item_ids
    rec.record_event(3, "sku18", "cart", NOW - 60)  # dropped and counted, not raised
    for _ in range(50):
        rec.recommend(3, n=10, now=NOW)
    # one timeout, then Redis is left alone for a while: calls stay fast
    assert time.perf_counter() - started < 2.0
    stats = rec.live.stats()
    assert stats.errors >= 1
    assert stats.dropped_events >= 1
