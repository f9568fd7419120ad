"""Check that the Grafana dashboard and the Prometheus alerts ask for metrics that exist, and runbooks that exist.

promtool and Grafana accept any metric name: a misspelt one is a panel that stays empty and an alert that
never fires. So:
  1. every metric named in a dashboard query (deploy/grafana/dashboards/*.json) or an alert expression
     (deploy/prometheus/alerts.yml) is one of METRICS below (with its counter or histogram suffixes);
  2. every name in METRICS appears, quoted, in the app's source (backend/app), so this list follows renames;
  3. the dashboards' panels have unique ids and query the templated data source;
  4. every alert's runbook_url (docs/operations.md#anchor) points at a heading of that file.
With --queries-as-rules FILE it also writes the dashboards' queries there as recording rules, so that
`promtool check rules FILE` parses them (scripts/lint-deploy.sh does).
Run with the backend's venv:
  backend/.venv/bin/python scripts/check_monitoring.py [--alerts F] [--dashboards DIR] [--queries-as-rules FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_DIR = REPO_ROOT / "backend" / "app"
DASHBOARDS_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DATASOURCE = "${datasource}"

# What the app exposes (docs/operations.md, "Observability"), by type: a counter is queried as <name>_total,
# a histogram as <name>_bucket, _sum and _count.
METRICS = {
    "chitram_http_requests": "counter",
    "chitram_http_request_duration_seconds": "histogram",
    "chitram_http_requests_in_flight": "gauge",
    "chitram_uploads": "counter",
    "chitram_upload_size_bytes": "histogram",
    "chitram_storage_bytes_written": "counter",
    "chitram_storage_free_bytes": "gauge",
    "chitram_storage_operation_duration_seconds": "histogram",
    "chitram_storage_errors": "counter",
    "chitram_cache_lookups": "counter",
    "chitram_rate_limit_refusals": "counter",
    "chitram_upload_slot_waits": "counter",
    "chitram_upload_slot_timeouts": "counter",
    "chitram_image_stage_duration_seconds": "histogram",
    "chitram_image_stage_failures": "counter",
    "chitram_jobs": "counter",
    "chitram_job_duration_seconds": "histogram",
    "chitram_job_wait_seconds": "histogram",
    "chitram_job_queue_depth": "gauge",
    "chitram_job_queue_oldest_age_seconds": "gauge",
    "chitram_thumbnails_pending": "gauge",
    "chitram_db_connections_in_use": "gauge",
    "chitram_db_pool_capacity": "gauge",
    "chitram_db_reads": "counter",
    "chitram_build_info": "gauge",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# Not the app's: MinIO's free space (the Compose profile scrapes MinIO too).
OTHER_METRICS = {"minio_cluster_capacity_usable_free_bytes"}
METRIC_NAME = re.compile(r"\b(?:chitram|minio)_[a-z0-9_]+\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def queryable_names() -> set[str]:
    names = {name + suffix for name, kind in METRICS.items() for suffix in SUFFIXES[kind]}
    return names | OTHER_METRICS


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_problems(path: Path, known: set[str]) -> list[str]:
    problems = []
    dashboard = json.loads(path.read_text())
    seen_ids: set[int] = set()
    for panel in _panels(dashboard.get("panels") or []):
        title = panel.get("title", "?")
        if panel.get("id") in seen_ids:
            problems.append(f"{path}: panel id {panel.get('id')} ({title}) is used twice")
        seen_ids.add(panel.get("id"))
        for target in panel.get("targets") or []:
            if (target.get("datasource") or panel.get("datasource") or {}).get("uid") != DATASOURCE:
                problems.append(f"{path}: panel {title!r} does not query the {DATASOURCE} data source")
            problems += [
                f"{path}: panel {title!r} queries {name}, which nothing exposes"
                for name in sorted(set(METRIC_NAME.findall(target.get("expr", ""))) - known)
            ]
    return problems


def dashboard_queries(path: Path) -> dict[str, str]:
    """The dashboard's PromQL by panel id and query letter, with Grafana's $__rate_interval as a duration."""
    dashboard = json.loads(path.read_text())
    return {
        f"panel_{panel.get('id')}_query_{target.get('refId')}": target["expr"].replace("$__rate_interval", "1m")
        for panel in _panels(dashboard.get("panels") or [])
        for target in panel.get("targets") or []
        if target.get("expr")
    }


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def alert_problems(path: Path, known: set[str]) -> list[str]:
    problems = []
    anchors: dict[Path, set[str]] = {}
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            problems += [
                f"{path}: {name} uses {metric}, which nothing exposes"
                for metric in sorted(set(METRIC_NAME.findall(rule["expr"])) - known)
            ]
            runbook = (rule.get("annotations") or {}).get("runbook_url")
            if rule.get("alert") and not runbook:
                problems.append(f"{path}: {name} has no runbook_url")
                continue
            if runbook:
                document, _, anchor = runbook.partition("#")
                document_path = REPO_ROOT / document
                if document_path not in anchors:
                    text = document_path.read_text() if document_path.is_file() else ""
                    anchors[document_path] = {github_anchor(heading) for heading in HEADING.findall(text)}
                if anchor not in anchors[document_path]:
                    problems.append(f"{path}: {name}'s runbook {runbook} names no heading of {document}")
    return problems


def app_problems() -> list[str]:
    source = "\n".join(path.read_text() for path in APP_DIR.rglob("*.py"))
    return [
        f"check_monitoring.py lists {name}, which backend/app never names: renamed? update METRICS"
        for name in sorted(METRICS)
        if f'"{name}"' not in source
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=Path, default=ALERTS)
    parser.add_argument("--dashboards", type=Path, default=DASHBOARDS_DIR, help="a folder of dashboard JSON files")
    parser.add_argument("--queries-as-rules", type=Path, help="write the dashboards' queries here, for promtool")
    args = parser.parse_args()
    known = queryable_names()
    problems = app_problems()
    dashboards = sorted(args.dashboards.glob("*.json"))
    if not dashboards:
        problems.append(f"no dashboard in {args.dashboards}")
    for dashboard in dashboards:
        try:
            problems += dashboard_problems(dashboard, known)
        except json.JSONDecodeError as error:
            problems.append(f"{dashboard}: not JSON: {error}")
    problems += alert_problems(args.alerts, known)
    if args.queries_as_rules is not None and not problems:
        rules = [
            {"record": f"{dashboard.stem}_{name}", "expr": query}
            for dashboard in dashboards
            for name, query in dashboard_queries(dashboard).items()
        ]
        args.queries_as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard queries", "rules": rules}]}))
    for problem in problems:
        print(f"check_monitoring: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("check_monitoring: the dashboards and alerts name only exposed metrics and existing runbooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
