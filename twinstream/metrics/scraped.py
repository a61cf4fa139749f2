"""Whether Prometheus has scraped a value yet, asked through its HTTP query API.

A process that exits right after its last update (a short training run) takes its ``/metrics`` endpoint
with it; unless Prometheus scraped it first, the final values never reach a dashboard. Scrape timing
(file-SD refresh plus scrape interval, 5 + 5 s on the local stack) is Prometheus's, so the only proof is
to ask it.
"""

from __future__ import annotations

import logging
import math
import time

import httpx

log = logging.getLogger(__name__)


def scraped_value(prometheus_url: str, expr: str, *, timeout_s: float = 5.0) -> float | None:
    """The largest value of instant query ``expr`` now (None when it has no finite sample).

    Raises:
        httpx.HTTPError: If Prometheus does not answer or refuses the query.
    """
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=timeout_s)
    response.raise_for_status()
    values = [float(item["value"][1]) for item in response.json()["data"]["result"]]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else None


def wait_until_scraped(
    prometheus_url: str, expr: str, minimum: float, *, timeout_s: float, interval_s: float = 0.5
) -> bool:
    """Poll until ``expr`` shows at least ``minimum`` in Prometheus; False at the deadline.

    Gives up at once (False) when Prometheus does not answer: nobody is there to scrape.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = scraped_value(prometheus_url, expr)
        except httpx.HTTPError as exc:
            log.warning(
                "Prometheus at %s did not answer (%s): not waiting for its scrape", prometheus_url, exc
            )
            return False
        if value is not None and value >= minimum:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
