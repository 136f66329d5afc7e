"""HttpTarget against real HTTP servers on 127.0.0.1: a reliable one, one that fails 10% of
requests, a slow one; the query count, the budget, the rate limit and the JSON mapping."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from miaudit.exceptions import MiauditError, ValidationError
from miaudit.targets import capabilities, check_capabilities
from miaudit.targets.http import HttpTarget, QueryBudgetExceeded

N_FEATURES, N_CLASSES = 6, 4
WEIGHTS = np.random.default_rng(0).normal(size=(N_FEATURES, N_CLASSES))
FAST_BACKOFF = 0.005


def model(x: np.ndarray) -> np.ndarray:
    """The served model: logits of a fixed linear map."""
    return x @ WEIGHTS


@dataclass
class ServerState:
    """What the server saw: queries (records) and requests, counted on receipt."""

    fail_rate: float = 0.0
    slow_s: float = 0.0
    slow_first: int = 0
    labels_only: bool = False
    nested: bool = False
    status: int = 503
    queries: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(1))


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            rows = body["instances" if state.nested else "inputs"]
            with state.lock:
                state.queries += len(rows)
                state.requests += 1
                nth = state.requests
                fail = state.rng.random() < state.fail_rate
            if state.slow_s and nth <= state.slow_first:
                time.sleep(state.slow_s)
            if fail:
                self.send_response(state.status)
                self.end_headers()
                return
            logits = model(np.asarray(rows, dtype=np.float64))
            if state.labels_only:
                reply: object = {"outputs": logits.argmax(1).tolist()}
            elif state.nested:
                reply = {"result": {"scores": logits.tolist()}}
            else:
                reply = {"outputs": logits.tolist()}
            data = json.dumps(reply).encode()
            try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    return Handler


@contextmanager
def serve(state: ServerState) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def records(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES))


def test_outputs_equal_the_served_model_and_counts_match() -> None:
    state = ServerState()
    X = records(300)
    with serve(state) as url, HttpTarget(url, batch_size=64) as target:
        out = target.predict(X)
    np.testing.assert_allclose(out, model(X), rtol=1e-12)
    assert target.queries == state.queries == 300
    assert target.requests == state.requests == 5  # ceil(300 / 64)
    assert target.usage()["failures"] == 0


def test_keeps_working_under_ten_percent_failures_within_budget() -> None:
    state = ServerState(fail_rate=0.1)
    X = records(2_000)
    budget = 2_600
    with (
        serve(state) as url,
        HttpTarget(url, batch_size=25, backoff=FAST_BACKOFF, budget=budget) as target,
    ):
        out = target.predict(X)
    np.testing.assert_allclose(out, model(X), rtol=1e-12)
    assert target.failures > 0  # the server did fail
    assert target.queries == state.queries <= budget
    assert target.requests == state.requests == 80 + target.failures


def test_never_exceeds_the_budget_even_with_retries() -> None:
    state = ServerState(fail_rate=0.3)
    budget = 500
    with (
        serve(state) as url,
        HttpTarget(url, batch_size=50, backoff=FAST_BACKOFF, budget=budget) as target,
    ):
        with pytest.raises(QueryBudgetExceeded, match="budget"):
            for _ in range(20):
                target.predict(records(100))
    assert state.queries == target.queries <= budget
    assert target.usage()["remaining"] == budget - state.queries


def test_refuses_a_batch_that_does_not_fit_before_sending() -> None:
    state = ServerState()
    with serve(state) as url, HttpTarget(url, budget=100) as target:
        target.predict(records(80))
        with pytest.raises(QueryBudgetExceeded, match="80 of 100"):
            target.predict(records(40))
    assert state.queries == target.queries == 80


def test_slow_server_times_out_then_retries() -> None:
    state = ServerState(slow_s=0.6, slow_first=2)
    X = records(40)
    with (
        serve(state) as url,
        HttpTarget(url, batch_size=40, timeout=0.2, backoff=FAST_BACKOFF) as target,
    ):
        out = target.predict(X)
    np.testing.assert_allclose(out, model(X), rtol=1e-12)
    assert target.failures == 2
    assert target.queries == state.queries == 120


def test_gives_up_after_max_retries_with_a_clear_error() -> None:
    state = ServerState(fail_rate=1.0)
    with serve(state) as url, HttpTarget(url, max_retries=2, backoff=FAST_BACKOFF) as target:
        with pytest.raises(MiauditError, match="failed 3 times"):
            target.predict(records(5))
    assert state.requests == 3


def test_client_errors_are_not_retried() -> None:
    state = ServerState(fail_rate=1.0, status=400)
    with serve(state) as url, HttpTarget(url, backoff=FAST_BACKOFF) as target:
        with pytest.raises(MiauditError, match="HTTP 400"):
            target.predict(records(5))
    assert state.requests == 1


def test_rate_limit_spaces_requests() -> None:
    state = ServerState()
    rate = 40.0
    with serve(state) as url, HttpTarget(url, batch_size=1, rate_limit=rate) as target:
        start = time.monotonic()
        target.predict(records(9))
        elapsed = time.monotonic() - start
    assert elapsed >= 8 / rate * 0.95


def test_request_and_response_mapping() -> None:
    state = ServerState(nested=True)
    X = records(10)
    with (
        serve(state) as url,
        HttpTarget(
            url, input_field="instances", output_path="result.scores", extra_fields={"v": 1}
        ) as target,
    ):
        np.testing.assert_allclose(target.predict(X), model(X), rtol=1e-12)
        target.output_path = "result.missing"
        with pytest.raises(ValidationError, match=r"result\.missing.*scores"):
            target.predict(X)


def test_label_only_endpoint() -> None:
    state = ServerState(labels_only=True)
    X = records(30)
    with (
        serve(state) as url,
        HttpTarget(url, outputs=frozenset({"label"}), n_classes=N_CLASSES) as target,
    ):
        out = target.predict(X)
        from miaudit.attacks.lira import LiraAttack

        with pytest.raises(MiauditError, match=r"lira.*label"):
            check_capabilities(LiraAttack.info, target)
    np.testing.assert_array_equal(out.argmax(1), model(X).argmax(1))
    assert out.sum() == 30
    assert capabilities(target) == {"label"}


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="url"):
        HttpTarget("127.0.0.1:80")
    with pytest.raises(ValidationError, match="n_classes"):
        HttpTarget("http://127.0.0.1:1/", outputs=frozenset({"label"}))
    with pytest.raises(ValidationError, match="rate_limit"):
        HttpTarget("http://127.0.0.1:1/", rate_limit=0)
