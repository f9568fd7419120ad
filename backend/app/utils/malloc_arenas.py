"""Fewer glibc malloc arenas for a serving process: decoders' big buffers are reused instead of faulted in anew.

Image decoders allocate tens of megabytes per picture (a 1600x1200 WebP: its canvas, the previous
frame, Pillow's copy). glibc gives each thread that allocates its own arena, up to eight per core,
and returns memory freed at the top of an arena to the kernel, so with uploads decoded on many
threads almost every decode touched fresh pages: ~6,000 page faults and ~15 ms of kernel time per
WebP upload, a third of its cost (docs/performance.md). Two arenas shared by all threads keep those
buffers warm: 46 ms instead of 55 per WebP upload, the same resident memory, JPEG uploads unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

SERVING_ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = SERVING_ARENAS) -> bool:
    """Cap glibc's arenas (before threads start); whether it was done.

    An operator's own MALLOC_ARENA_MAX wins (glibc read it at start), and a C library other than
    glibc (musl) is left as it is.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    if mallopt(_M_ARENA_MAX, arenas) != 1:
        logger.debug("mallopt(M_ARENA_MAX) refused; malloc arenas left as they are")
        return False
    return True
