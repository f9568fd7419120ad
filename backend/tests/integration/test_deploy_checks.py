"""The deployment checks catch what they exist for: unknown variable names and broken deployment files.

scripts/lint-deploy.sh needs Debian's caddy and promtool (package prometheus), which `make lint` installs
first (scripts/install-system-deps.sh); without them these tests fail with that instruction, they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS_DIR = REPO_ROOT / "scripts"
TIMEOUT_SECONDS = 120


def _run(command: list[str], **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False, env=os.environ | environment
    )


def _check_env_names(*arguments: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, str(SCRIPTS_DIR / "check_env_names.py"), *arguments])


def _broken_copy(source: Path, target: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} not in {source.name}: update this test"
    target.write_text(text.replace(old, new, 1))
    return target


def test_env_names_of_the_real_compose_file_and_env_example_match_the_settings() -> None:
    result = _check_env_names()
    assert result.returncode == 0, result.stderr


def test_env_names_check_rejects_a_variable_the_app_does_not_read(tmp_path: Path) -> None:
    compose = _broken_copy(
        REPO_ROOT / "docker-compose.yml",
        tmp_path / "docker-compose.yml",
        "      WORKER_PROCESSES: ${WORKER_PROCESSES:-0}",
        "      WORKER_PROCESS: ${WORKER_PROCESSES:-0}",
    )
    result = _check_env_names("--compose", str(compose))
    assert result.returncode == 1
    assert "`worker` sets WORKER_PROCESS, which the image does not read" in result.stderr


def test_env_names_check_rejects_a_compose_variable_missing_from_env_example(tmp_path: Path) -> None:
    env_example = tmp_path / ".env.example"
    env_example.write_text(
        "".join(
            line + "\n"
            for line in (REPO_ROOT / ".env.example").read_text().splitlines()
            if not line.startswith("REDIS_PASSWORD=")
        )
    )
    result = _check_env_names("--env-example", str(env_example))
    assert result.returncode == 1
    assert "uses ${REDIS_PASSWORD}, which .env.example does not document" in result.stderr


def _lint_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("caddy"), "caddy is not installed: run scripts/install-system-deps.sh (make lint does)"
    return _run(["bash", str(SCRIPTS_DIR / "lint-deploy.sh")], **overrides)


def test_lint_deploy_passes_on_the_real_files() -> None:
    result = _lint_deploy()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "file", "old", "new"),
    [
        ("CADDYFILE", "Caddyfile", "\tencode zstd gzip {", "\tencode_everything zstd gzip {"),
        ("DOCKERFILE", "backend/Dockerfile", "FROM python:3.11-slim AS runtime", "FROM python AS runtime"),
        (
            "COMPOSE_FILE",
            "docker-compose.yml",
            "    restart: unless-stopped\n",
            "    restart: unless-stopped\n    restart_policy: always\n",
        ),
    ],
    ids=["caddyfile", "dockerfile", "compose"],
)
def test_lint_deploy_fails_on_a_broken_file(tmp_path: Path, variable: str, file: str, old: str, new: str) -> None:
    broken = _broken_copy(REPO_ROOT / file, tmp_path / Path(file).name, old, new)
    result = _lint_deploy(**{variable: str(broken)})
    assert result.returncode == 1
    assert "FAILED: " in result.stderr
    assert str(broken) in result.stderr


def test_private_key_detector_names_the_file_and_line(tmp_path: Path) -> None:
    marker = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"  # split so this test file is not flagged itself
    leaked = tmp_path / "id_ed25519"
    leaked.write_text(f"comment\n{marker}\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    clean = tmp_path / "notes.txt"
    clean.write_text("a PRIVATE KEY is mentioned, none is included\n")

    result = _run([sys.executable, str(SCRIPTS_DIR / "detect_private_keys.py"), str(clean), str(leaked)])
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{leaked}:2: private key; keep keys out of the repository (use .env or a secret store)"
    ]
    assert _run([sys.executable, str(SCRIPTS_DIR / "detect_private_keys.py"), str(clean)]).returncode == 0
