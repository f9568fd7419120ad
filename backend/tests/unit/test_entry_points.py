"""The serving entry points hide the app's long-lived objects from the cyclic garbage collector.

`app_factory` (uvicorn) and `python -m app` both build their app with `create_serving_app`.

A full collection walks every tracked object with the GIL held; with the app's modules, routes,
schemas and mappings frozen it walks only what requests made. Each check runs in a child process:
freezing is process-wide, and this test process builds many apps that it should collect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from tests.conftest import BACKEND_DIR

_PROBE = """
import gc, json, sys, weakref
from app.main import app_factory, create_app
from app.config import get_settings

class Node:
    pass

gc.disable()  # only the entry point may collect from here on
garbage = Node()
garbage.cycle = garbage  # a reference cycle: only the cyclic collector can free it
garbage_ref = weakref.ref(garbage)
del garbage
app = app_factory() if sys.argv[1] == "factory" else create_app(get_settings())
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "app_walked_by_full_collections": any(o is app for o in gc.get_objects()),
    "routes_walked_by_full_collections": any(o is app.router.routes for o in gc.get_objects()),
    "earlier_garbage_collected": garbage_ref() is None,
}))
"""


def _probe(entry: str, tmp_path: Path) -> dict[str, object]:
    # Only this test's settings: none that the developer's shell may carry.
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env |= {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "LOCAL_STORAGE_PATH": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, entry],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_the_uvicorn_factory_freezes_what_the_app_built(tmp_path: Path) -> None:
    found = _probe("factory", tmp_path)

    assert found["earlier_garbage_collected"] is True  # not frozen in for good
    assert found["app_walked_by_full_collections"] is False
    assert found["routes_walked_by_full_collections"] is False
    assert isinstance(found["frozen"], int)
    assert found["frozen"] > 10_000


def test_building_an_app_alone_freezes_nothing(tmp_path: Path) -> None:
    # Tests and embedders call create_app directly; their apps stay collectable.
    found = _probe("create_app", tmp_path)

    assert found["app_walked_by_full_collections"] is True
    assert found["frozen"] == 0
    assert found["earlier_garbage_collected"] is False
