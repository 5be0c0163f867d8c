"""Prometheus HTTP API (prometheus-api-client): measure both tracks and judge the canary.

The only module that talks to Prometheus. `analyze` never raises: an unreachable server, a refused query
or a timeout becomes an `error` verdict whose reason says what went wrong, which the rollout counts toward
`maxConsecutiveErrors`. Both tracks are evaluated at one instant so they cover the same window.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from modeldeploy.analysis import (
    NO_DATA,
    Thresholds,
    TrackMeasurement,
    TrackQueries,
    Verdict,
    judge,
    track_queries,
)
from modeldeploy.credentials import PrometheusCredentials, redact


class QueryError(Exception):
    """Prometheus could not answer a query (unreachable, timeout, refused or malformed answer)."""


def analyze(  # noqa: PLR0917  # the positional signature is the contract (docs/architecture.md)
    prometheus_url: str,
    model: str,
    stable: Mapping[str, str],
    canary: Mapping[str, str],
    window: timedelta,
    thresholds: Thresholds,
    timeout_s: float = 10,
    credentials: PrometheusCredentials | None = None,
) -> Verdict:
    """Measure the stable and canary tracks of `model` over `window` and judge the canary."""
    shown = redact(prometheus_url)  # what messages say: never the user info of a URL
    try:
        if not prometheus_url.startswith(("http://", "https://")):
            raise ValueError(f"the Prometheus URL must start with http:// or https://, got {shown!r}")
        stable_queries = track_queries(model, stable, window)
        canary_queries = track_queries(model, canary, window)
    except ValueError as error:  # MatcherError included
        return Verdict("error", f"cannot build the queries: {error}", NO_DATA, NO_DATA)

    deadline = time.monotonic() + timeout_s
    evaluated_at = time.time()
    # No retries with back-off here: the rollout analyses again at the next interval anyway.
    try:
        with _connected(prometheus_url, credentials) as client:
            stable_measurement = _measure(client, stable_queries, evaluated_at, deadline)
            canary_measurement = _measure(client, canary_queries, evaluated_at, deadline)
    except QueryError as error:
        return Verdict("error", redact(f"Prometheus at {shown}: {error}"), NO_DATA, NO_DATA)
    except Exception as error:  # the contract: an analysis never raises into the operator
        reason = f"Prometheus at {shown}: unexpected {type(error).__name__}: {_first_line(error)}"
        return Verdict("error", redact(reason), NO_DATA, NO_DATA)
    return judge(stable_measurement, canary_measurement, thresholds)


def query_number(
    prometheus_url: str, query: str, timeout_s: float = 10, credentials: PrometheusCredentials | None = None
) -> float | None:
    """The number one aggregating instant query returns now (None: no data); raises QueryError."""
    with _connected(prometheus_url, credentials) as client:
        return _instant_value(client, query, time.time(), time.monotonic() + timeout_s)


@contextlib.contextmanager
def _connected(url: str, credentials: PrometheusCredentials | None) -> Iterator[PrometheusConnect]:
    """A client sending `credentials` (bearer token or basic auth) and trusting their CA bundle, if any."""
    session = requests.Session()
    ca_file: str | None = None
    if credentials is not None:
        if credentials.bearer_token is not None:
            session.headers["Authorization"] = f"Bearer {credentials.bearer_token}"
        if credentials.username is not None and credentials.password is not None:
            session.auth = (credentials.username, credentials.password)
        if credentials.ca_pem is not None:
            # requests verifies against a file; it lives only as long as this client.
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as bundle:
                bundle.write(credentials.ca_pem)
            ca_file = bundle.name
            session.verify = ca_file
    client = PrometheusConnect(url=url.rstrip("/"), retry=Retry(total=0), session=session)
    try:
        yield client
    finally:
        client.close()
        if ca_file is not None:
            os.unlink(ca_file)


def _measure(
    client: PrometheusConnect, queries: TrackQueries, at: float, deadline: float
) -> TrackMeasurement:
    return TrackMeasurement(
        requests=_instant_value(client, queries.requests, at, deadline),
        error_rate=_instant_value(client, queries.error_rate, at, deadline),
        mean_ms=_instant_value(client, queries.mean_ms, at, deadline),
        p99_ms=_instant_value(client, queries.p99_ms, at, deadline),
    )


def _instant_value(client: PrometheusConnect, query: str, at: float, deadline: float) -> float | None:
    """The single number an aggregating query returns, or None for an empty vector, NaN or infinity."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise QueryError("timed out before every query was answered")
    try:
        # The client types its timeout as int; round up so a short remainder still gets a second.
        timeout = max(1, math.ceil(remaining))
        result: Any = client.custom_query(query, params={"time": f"{at:.3f}"}, timeout=timeout)
    except requests.exceptions.Timeout as error:
        raise QueryError(f"timed out ({type(error).__name__})") from error
    except requests.exceptions.RequestException as error:
        raise QueryError(f"unreachable ({_connection_problem(error)})") from error
    except PrometheusApiClientException as error:
        raise QueryError(f"query refused: {_prometheus_error(error)}; query: {query}") from error
    except ValueError as error:  # a body that is not JSON: not a Prometheus API
        raise QueryError(f"answer is not Prometheus JSON ({error})") from error
    if not isinstance(result, list):
        raise QueryError(f"unexpected answer {result!r:.200} to {query}")
    if not result:
        return None
    if len(result) > 1:
        raise QueryError(f"expected one series, got {len(result)} for {query}")
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise QueryError(f"unexpected sample {result[0]!r:.200} for {query}") from error
    return value if math.isfinite(value) else None


def _prometheus_error(error: PrometheusApiClientException) -> str:
    """Prometheus's own `error` text out of the client's 'HTTP Status Code 400 (b'{...}')' message."""
    message = str(error)
    if message.startswith(("HTTP Status Code 401", "HTTP Status Code 403")):
        status = message.split(" (", 1)[0]
        return f"{status}: Prometheus refused the credentials (see monitoring.prometheusAuth)"
    match = re.search(r"\((b'.*'|b\".*\")\)\s*$", message, re.DOTALL)
    if match:
        try:
            body = json.loads(ast.literal_eval(match.group(1)))
            return f"{message.split(' (', 1)[0]}: {body['errorType']}: {body['error']}"
        except (ValueError, SyntaxError, KeyError, TypeError):
            status = message.split(" (", 1)[0]
            return f"{status}, and the answer is not Prometheus's API (is the URL Prometheus's base URL?)"
    return message[:500]


def _connection_problem(error: requests.exceptions.RequestException) -> str:
    """The socket error under urllib3's long message, which otherwise spells out the whole query URL."""
    if isinstance(error, requests.exceptions.SSLError):
        tls = re.search(r"\[SSL: [A-Z_]+\][^'\")\]]*", str(error))
        detail = re.sub(r"\s*\(_ssl\.c:\d+$", "", tls.group().strip()) if tls else "handshake failed"
        return f"TLS: {detail} (a private CA goes in the prometheusAuth Secret's ca.crt)"
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(error))
    return found.group().strip() if found else type(error).__name__


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]
