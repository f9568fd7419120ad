"""Check that docker-compose.yml, .env.example and the app agree on environment variable names.

A misspelt variable is silently ignored by pydantic-settings and the app runs on its default, so:
  1. every variable given to the `api` and `worker` services must be one the image reads: a field of
     `app.config.Settings` (upper-cased) or a `${NAME}` the image's own start-up reads (backend/Dockerfile,
     backend/scripts/prestart.sh, e.g. WEB_CONCURRENCY);
  2. every `${NAME}` that docker-compose.yml interpolates must be documented in .env.example;
  3. every name in .env.example must be used by docker-compose.yml (a name nothing reads misleads).
Run with the backend's venv: `backend/.venv/bin/python scripts/check_env_names.py [--compose F] [--env-example F]`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKEND_DIR = REPO_ROOT / "backend"
IMAGE_START_FILES = (BACKEND_DIR / "Dockerfile", BACKEND_DIR / "scripts" / "prestart.sh")
APP_SERVICES = ("api", "worker")  # the services that run the app's image
# Read by the OpenTelemetry SDK itself, not by Settings (app.observability.tracing); the ones Compose passes.
OTEL_NAMES = frozenset(
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}
)
# `$$` is Compose's escape for a literal `$`; it is matched first so `$$NAME` is not taken for a variable.
COMPOSE_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
SHELL_BRACED_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


def settings_names() -> set[str]:
    """Environment names the app reads: one per Settings field (an alias wins over the field name)."""
    sys.path.insert(0, str(BACKEND_DIR))
    from app.config import Settings

    prefix = str(Settings.model_config.get("env_prefix") or "")
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or f"{prefix}{field_name}").upper())
    return names


def image_start_names() -> set[str]:
    """`${NAME}`s read by the image's entrypoint and command (they are not app settings)."""
    names: set[str] = set()
    for path in IMAGE_START_FILES:
        names.update(SHELL_BRACED_VARIABLE.findall(path.read_text()))
    return names


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def interpolated_names(compose: dict[str, Any]) -> set[str]:
    names = set()
    for text in _strings(compose):
        for escaped, braced, bare in COMPOSE_VARIABLE.findall(text):
            if not escaped:
                names.add(braced or bare)
    return names


def service_environment_names(compose: dict[str, Any], service: str) -> tuple[set[str], list[str]]:
    problems = []
    definition = (compose.get("services") or {}).get(service)
    if not isinstance(definition, dict):
        return set(), [f"no `{service}` service"]
    if "env_file" in definition:
        problems.append(f"`{service}` uses env_file: list its variables under `environment` so they are checked")
    environment = definition.get("environment") or {}
    if isinstance(environment, dict):
        return set(environment), problems
    return {str(item).split("=", 1)[0] for item in environment}, problems


def env_example_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            names.add(match.group(1))
    return names


def check(compose_path: Path, env_example_path: Path) -> list[str]:
    compose = yaml.safe_load(compose_path.read_text()) or {}
    readable = settings_names() | image_start_names() | OTEL_NAMES
    problems: list[str] = []
    for service in APP_SERVICES:
        names, service_problems = service_environment_names(compose, service)
        problems += service_problems
        problems += [
            f"{compose_path.name}: `{service}` sets {name}, which the image does not read"
            " (no Settings field, not used by its start-up)"
            for name in sorted(names - readable)
        ]
    interpolated = interpolated_names(compose)
    documented = env_example_names(env_example_path)
    problems += [
        f"{compose_path.name} uses ${{{name}}}, which {env_example_path.name} does not document"
        for name in sorted(interpolated - documented)
    ]
    problems += [
        f"{env_example_path.name} documents {name}, which {compose_path.name} never uses"
        for name in sorted(documented - interpolated)
    ]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compose", type=Path, default=REPO_ROOT / "docker-compose.yml")
    parser.add_argument("--env-example", type=Path, default=REPO_ROOT / ".env.example")
    args = parser.parse_args()
    problems = check(args.compose, args.env_example)
    for problem in problems:
        print(f"check_env_names: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_env_names: {args.compose.name} and {args.env_example.name} match the app's settings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
