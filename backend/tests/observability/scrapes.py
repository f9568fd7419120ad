"""Reading `/metrics` as Prometheus does: the text parsed by prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "scrape-token-for-tests-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


def label_values(samples: list[Sample], name: str, label: str) -> set[str]:
    return {sample_labels[label] for sample_name, sample_labels, _ in samples if sample_name == name}


def scrape_sync(base_url: str, headers: dict[str, str] | None = None) -> list[Sample]:
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")  # the exposition format
    return parse(response.text)


async def scrape(client: httpx.AsyncClient) -> list[Sample]:
    response = await client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")  # the exposition format
    return parse(response.text)
