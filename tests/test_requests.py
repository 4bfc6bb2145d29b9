"""Few, full, overlapped requests: query-only attacks hand a black box each round's rows
in one call (its classifier splits them into requests of its ``batch_size``), the endpoint
client keeps ``concurrency`` requests truly in flight, and the results do not depend on how
the rows were split. The test server's ``latency`` option and per-request row counts."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from xrobust.attacks import get_attack
from xrobust.models import as_classifier, serving
from xrobust.models.classifier import CallableClassifier

D = 16  # values per input (1 x 4 x 4)
W = np.random.default_rng(0).normal(size=(3, D)).astype(np.float32)


def scores(a: np.ndarray) -> np.ndarray:
    """Per-row deterministic scores (the same bits whatever rows share the call): each
    class's sum of products along one contiguous axis."""
    flat = a.reshape(len(a), 1, D).astype(np.float32) - np.float32(0.5)
    return (flat * W[None]).sum(axis=2)


class CountingAsks(CallableClassifier):
    """A function classifier recording the rows of every ``ask`` (the attacks' calls)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(scores, input_shape=(1, 4, 4), num_classes=3, bounds=(0.0, 1.0),
                         batch_size=batch_size)  # fmt: skip
        self.asks: list[int] = []

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        self.asks.append(int(x.shape[0]))
        return super().ask(x)


def _data(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.from_numpy(scores(x.numpy()).argmax(1))
    return x, y


def _hsj(clf, x, y, queries: int = 400):
    return get_attack("hop_skip_jump", clf, norm="l2", queries=queries, seed=0).run(x, y)


def test_hop_skip_jump_sends_each_round_in_one_call() -> None:
    x, y = _data()
    clf = CountingAsks(batch_size=8)
    res = _hsj(clf, x, y)
    assert sum(clf.asks) == clf.queries == int(res.queries.sum())  # equal queries, all counted
    # the gradient estimates (100+ directions per example) went in single calls...
    assert max(clf.asks) >= 100 * int((res.steps > 0).sum())
    # ...where one call per batch_size rows (the old loop) would have made many more
    per_chunk = sum(math.ceil(r / clf.batch_size) for r in clf.asks)
    assert len(clf.asks) * 3 < per_chunk
    assert clf.calls == per_chunk  # the source itself still gets batch_size rows at most


def test_hop_skip_jump_results_do_not_depend_on_how_rows_are_split() -> None:
    x, y = _data()
    small, whole = CountingAsks(batch_size=8), CountingAsks(batch_size=100_000)
    a, b = _hsj(small, x, y), _hsj(whole, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert torch.equal(a.norms, b.norms) and small.asks == whole.asks
    assert bool(a.success.any())


def test_square_sends_each_iteration_in_one_call() -> None:
    x, y = _data()
    clf = CountingAsks(batch_size=2)
    res = get_attack("square", clf, eps=0.3, queries=50, seed=0, early_stop=False).run(x, y)
    # the clean pass, then one call per iteration with every example
    assert clf.asks == [len(x)] * 50 and int(res.queries.sum()) == clf.queries


@pytest.fixture
def in_flight():
    """A server whose every request waits until 4 are in flight together (a barrier: a
    client that sends them one after another times out), counting the most seen."""
    barrier = threading.Barrier(4, timeout=20)

    def predict(a: np.ndarray) -> np.ndarray:
        barrier.wait()
        return scores(a)

    with serving.serve(predict) as server:
        yield server


def test_endpoint_keeps_concurrency_requests_in_flight(in_flight) -> None:
    with as_classifier(in_flight.url, input_shape=(1, 4, 4), num_classes=3, batch_size=8,
                       concurrency=4) as clf:  # fmt: skip
        x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(2))
        out = clf.scores(x)
    assert torch.equal(out, torch.from_numpy(scores(x.numpy())))
    assert in_flight.requests == 4 and in_flight.request_rows == [8] * 4


def test_hop_skip_jump_over_an_endpoint_overlaps_full_requests() -> None:
    lock, now, most = threading.Lock(), [0], [0]

    def predict(a: np.ndarray) -> np.ndarray:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        threading.Event().wait(0.02)  # a round trip: requests in flight overlap here
        with lock:
            now[0] -= 1
        return scores(a)

    x, y = _data(4)
    with serving.serve(predict) as server:
        with as_classifier(server.url, input_shape=(1, 4, 4), num_classes=3,
                           bounds=(0.0, 1.0), batch_size=16, concurrency=4) as clf:  # fmt: skip
            res = _hsj(clf, x, y, queries=250)
        ref = _hsj(CountingAsks(batch_size=16), x, y, queries=250)
    assert torch.equal(res.x_adv, ref.x_adv)  # the same attack, over HTTP
    assert server.rows_received == int(res.queries.sum())
    assert most[0] == 4  # the gradient rounds' requests were in flight together
    full = sum(r == 16 for r in server.request_rows)
    assert full >= (server.rows_received // 2) // 16  # most rows went in full requests


def test_serve_latency_option() -> None:
    with pytest.raises(ValueError, match="latency"):
        serving.serve(scores, latency=-1)
    with serving.serve(scores, latency=0.01) as server:
        with as_classifier(server.url, input_shape=(1, 4, 4), num_classes=3,
                           batch_size=4) as clf:  # fmt: skip
            clf.scores(torch.rand(10, 1, 4, 4))
        assert sorted(server.request_rows) == [2, 4, 4] and server.requests == 3
        server.reset()
        assert server.request_rows == [] and server.rows_received == 0
