"""A model behind an HTTP endpoint, queried with JSON, within a query budget.

:class:`HttpTarget` posts records in batches as JSON, ``{input_field: [[...], ...], **extra}``,
and reads the outputs at ``output_path`` of the JSON reply (a dotted path: ``"outputs"``,
``"result.scores"``, ``"predictions.0"``). The reply holds one row of ``C`` logits or
probabilities per record, or — for a label-only endpoint (``outputs={"label"}``) — one integer
label per record, which becomes a one-hot row of ``n_classes``.

Failures and back-off
    A request that fails in transport (connection error, timeout) or with status 429, 500, 502,
    503 or 504 is retried up to ``max_retries`` times; retry ``r`` (1, 2, …) waits
    ``min(max_backoff, backoff * 2**(r-1))`` seconds with equal jitter (half fixed, half
    uniform from a seeded generator), or the server's ``Retry-After`` when it is longer (capped
    at ``max_backoff``). Other 4xx statuses are not retried: the error shows the status and the
    start of the body.

Rate limit
    At most ``rate_limit`` requests per second: consecutive requests start at least
    ``1 / rate_limit`` seconds apart.

Query budget
    A *query* is one record sent to the endpoint, in every attempt, retries included — what the
    server sees and what a metered API bills. ``budget`` caps them: a request that would push
    :attr:`HttpTarget.queries` past the budget is never sent (:class:`QueryBudgetExceeded`),
    and a ``predict`` whose records alone do not fit is refused before its first request.
    :meth:`HttpTarget.usage` reports queries, requests, failures and the budget.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._validation import check_count
from miaudit.exceptions import MiauditError, ValidationError
from miaudit.targets import OutputKind, _closure

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RETRY_STATUSES",
    "HttpTarget",
    "QueryBudgetExceeded",
]

#: Records per request.
DEFAULT_BATCH_SIZE = 256
#: Retries of one request after its first attempt.
DEFAULT_MAX_RETRIES = 5
#: Wait before the first retry, seconds; doubles with every further retry.
DEFAULT_BACKOFF_S = 0.2
#: Longest wait between two attempts, seconds.
DEFAULT_MAX_BACKOFF_S = 10.0
#: Timeout of one request (connect, read, write, pool), seconds.
DEFAULT_TIMEOUT_S = 30.0
#: HTTP statuses that are retried: too many requests and transient server errors.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Characters of an error reply's body quoted in the error message.
BODY_EXCERPT = 200


class QueryBudgetExceeded(MiauditError):
    """A request would send more queries (records) than the target's budget allows."""


def _lookup(reply: Any, path: str) -> Any:
    """The value at dotted ``path`` of a decoded JSON reply (integers index lists)."""
    node = reply
    walked: list[str] = []
    for part in path.split(".") if path else []:
        walked.append(part)
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            keys = list(node)[:10] if isinstance(node, Mapping) else type(node).__name__
            raise ValidationError(
                f"output_path {path!r}: the reply has no {'.'.join(walked)!r} (found: {keys})"
            )
    return node


@dataclass
class HttpTarget:
    """A classifier served over HTTP (JSON in, JSON out); see the module docstring.

    Parameters
    ----------
    url : str
        Endpoint receiving ``POST`` requests.
    kind : {"logits", "probs"}
        What the rows of the reply are.
    n_classes : int, optional
        Needed for a label-only endpoint (its labels become one-hot rows).
    outputs : set of str, optional
        What the endpoint returns (:data:`miaudit.targets.CAPABILITIES`); ``{"label"}`` means
        one integer label per record. Default: what ``kind`` says.
    input_field : str
        Name of the request field holding the batch of records.
    output_path : str
        Dotted path of the outputs in the reply.
    extra_fields : mapping
        Further fields of every request body (a model name, an API version, …).
    headers : mapping
        HTTP headers (an API key, …).
    batch_size : int
        Records per request.
    max_retries : int
        Retries of a failed request (0: none).
    backoff, max_backoff : float
        First and longest wait between attempts, seconds.
    rate_limit : float, optional
        Most requests per second.
    timeout : float
        Seconds before one request times out (then it is retried).
    budget : int, optional
        Most queries (records sent, retries included) over the target's lifetime.
    seed : int
        Seed of the back-off jitter.
    """

    url: str
    kind: OutputKind = "logits"
    n_classes: int | None = None
    outputs: frozenset[str] | None = None
    input_field: str = "inputs"
    output_path: str = "outputs"
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH_SIZE
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: float = DEFAULT_BACKOFF_S
    max_backoff: float = DEFAULT_MAX_BACKOFF_S
    rate_limit: float | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    budget: int | None = None
    seed: int = 0
    queries: int = field(default=0, init=False)
    requests: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    _client: Any = field(default=None, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    _next_start: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValidationError(f"url: expected an http:// or https:// URL, got {self.url!r}")
        if self.kind not in ("logits", "probs"):
            raise ValidationError(f"kind: expected 'logits' or 'probs', got {self.kind!r}")
        if self.outputs is not None:
            self.outputs = frozenset(self.outputs)
            _closure(self.outputs, "HttpTarget.outputs")
            if self.label_only and self.n_classes is None:
                raise ValidationError(
                    "n_classes: required for a label-only endpoint (outputs={'label'}), "
                    "to turn its labels into one-hot rows"
                )
        if self.n_classes is not None:
            self.n_classes = check_count(self.n_classes, "n_classes", 1)
        self.batch_size = check_count(self.batch_size, "batch_size", 1)
        self.max_retries = check_count(self.max_retries, "max_retries", 0)
        for name in ("backoff", "max_backoff", "timeout"):
            value = float(getattr(self, name))
            if not (np.isfinite(value) and value >= 0):
                raise ValidationError(f"{name}: expected a non-negative number, got {value!r}")
            setattr(self, name, value)
        if self.rate_limit is not None and not float(self.rate_limit) > 0:
            raise ValidationError(
                f"rate_limit: expected requests per second > 0, got {self.rate_limit!r}"
            )
        if self.budget is not None:
            self.budget = check_count(self.budget, "budget", 0)
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ state
    @property
    def label_only(self) -> bool:
        """Whether the endpoint returns one label per record (``outputs == {"label"}``)."""
        return self.outputs is not None and set(self.outputs) == {"label"}

    def usage(self) -> dict[str, int | None]:
        """Queries (records sent, retries included), requests, failed requests and budget."""
        return {
            "queries": self.queries,
            "requests": self.requests,
            "failures": self.failures,
            "budget": self.budget,
            "remaining": None if self.budget is None else self.budget - self.queries,
        }

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- querying
    def predict(self, X: NDArray) -> NDArray[np.float64]:
        """Outputs ``(n, C)`` on the records ``X`` (flattened per record for the JSON body).

        Raises
        ------
        QueryBudgetExceeded
            Before any request when ``len(X)`` queries do not fit in the remaining budget, or
            before the retry that would exceed it.
        MiauditError
            When a request still fails after ``max_retries`` retries, or fails with a status
            that is not retried.
        ValidationError
            When the reply has no ``output_path`` or the wrong shape.
        """
        X = np.asarray(X)
        n = len(X)
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"HttpTarget {self.url}: {n} records do not fit in the query budget "
                f"({self.queries} of {self.budget} used)"
            )
        rows = X.reshape(n, -1)
        parts = [self._query(rows[s : s + self.batch_size]) for s in range(0, n, self.batch_size)]
        if not parts:
            return np.zeros((0, self.n_classes or 0))
        return np.concatenate(parts)

    def _client_or_new(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), headers=self.headers)
        return self._client

    def _wait_for_rate_limit(self) -> None:
        if self.rate_limit is None:
            return
        now = time.monotonic()
        if now < self._next_start:
            time.sleep(self._next_start - now)
            now = self._next_start
        self._next_start = now + 1.0 / float(self.rate_limit)

    def _delay(self, retry: int, retry_after: str | None) -> float:
        base = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        delay = base / 2.0 + self._rng.uniform(0.0, base / 2.0)
        if retry_after is not None:
            try:
                delay = max(delay, min(self.max_backoff, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own back-off
        return delay

    def _query(self, rows: NDArray) -> NDArray[np.float64]:
        import httpx

        body = json.dumps({**self.extra_fields, self.input_field: rows.tolist()})
        headers = {"content-type": "application/json"}
        client = self._client_or_new()
        last = "no attempt"
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if self.budget is not None and self.queries + len(rows) > self.budget:
                raise QueryBudgetExceeded(
                    f"HttpTarget {self.url}: retrying a batch of {len(rows)} records would "
                    f"exceed the query budget ({self.queries} of {self.budget} used; last "
                    f"failure: {last})"
                )
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            self._wait_for_rate_limit()
            self.queries += len(rows)
            self.requests += 1
            try:
                reply = client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                self.failures += 1
                retry_after = None
                last = f"{type(exc).__name__}: {exc}"
                continue
            retry_after = None
            if reply.status_code in RETRY_STATUSES:
                self.failures += 1
                retry_after = reply.headers.get("retry-after")
                last = f"HTTP {reply.status_code}"
                continue
            if reply.status_code >= 400:
                self.failures += 1
                raise MiauditError(
                    f"HttpTarget {self.url}: HTTP {reply.status_code} (not retried): "
                    f"{reply.text[:BODY_EXCERPT]!r}"
                )
            return self._decode(reply, len(rows))
        raise MiauditError(
            f"HttpTarget {self.url}: a batch of {len(rows)} records failed {self.max_retries + 1} "
            f"times (last: {last}); raise max_retries or timeout, or lower rate_limit"
        )

    def _decode(self, reply: Any, n: int) -> NDArray[np.float64]:
        try:
            decoded = reply.json()
        except ValueError:
            raise ValidationError(
                f"HttpTarget {self.url}: the reply is not JSON: {reply.text[:BODY_EXCERPT]!r}"
            ) from None
        try:
            out = np.asarray(_lookup(decoded, self.output_path), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(
                f"output_path {self.output_path!r}: expected numbers, got {exc}"
            ) from None
        if self.label_only:
            assert self.n_classes is not None
            if (
                out.shape != (n,)
                or np.any(out != np.round(out))
                or np.any(out < 0)
                or np.any(out >= self.n_classes)
            ):
                raise ValidationError(
                    f"output_path {self.output_path!r}: expected {n} integer labels in "
                    f"0..{self.n_classes - 1}, got shape {out.shape}"
                )
            onehot = np.zeros((n, self.n_classes))
            onehot[np.arange(n), out.astype(np.int64)] = 1.0
            return onehot
        if (
            out.ndim != 2
            or out.shape[0] != n
            or (self.n_classes is not None and out.shape[1] != self.n_classes)
        ):
            want = f"({n}, {self.n_classes or 'n_classes'})"
            raise ValidationError(
                f"output_path {self.output_path!r}: expected outputs of shape {want}, got "
                f"{out.shape}"
            )
        if not np.all(np.isfinite(out)):
            raise ValidationError(f"output_path {self.output_path!r}: the reply has NaN or inf")
        return out
