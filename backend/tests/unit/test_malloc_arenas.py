"""A serving process's threads share two malloc arenas, unless the operator chose otherwise."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import BACKEND_DIR
from tests.servers import app_server_env

# Eight threads each hold 4 MB at once; glibc's own malloc_info then tells how many arenas served them.
PROGRAM = """
import ctypes, ctypes.util, re, sys, tempfile, threading
from app.utils.malloc_arenas import limit_malloc_arenas

limited = limit_malloc_arenas() if sys.argv[1] == "limit" else False
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
held = threading.Barrier(8)

def allocate():
    block = libc.malloc(4 * 1024 * 1024)
    held.wait()
    libc.free(block)

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    heaps = len(re.findall(r'<heap nr="', open(report.name).read()))
print(limited, heaps)
"""


def run(mode: str, **env: str) -> tuple[str, int]:
    finished = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        cwd=BACKEND_DIR,
        env=app_server_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    limited, heaps = finished.stdout.split()
    return limited, int(heaps)


def test_threads_of_a_serving_process_share_two_arenas() -> None:
    assert run("limit") == ("True", 2)
    _, unlimited = run("as-is")
    assert unlimited > 2


def test_an_operators_malloc_arena_max_is_left_alone() -> None:
    limited, heaps = run("limit", MALLOC_ARENA_MAX="4")
    assert limited == "False"
    assert heaps == 4
