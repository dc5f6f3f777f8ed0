"""Keeping the agent's resident memory small on a board with little of it (glibc only; no-ops
elsewhere).

- :func:`limit_malloc_arenas` at start: the agent runs a few threads (camera capture, GPIO,
  executor); by default each may get a malloc arena of its own, tens of megabytes for nothing.
- :func:`release_memory` after each call: a call leaves reference cycles (aiortc's peer
  connection, its transports and callbacks) and freed codec buffers that glibc keeps. Collecting
  the cycles and trimming the heap gives the memory back (measured with ``bench/tv_call.py``:
  growth per call about halved, and no longer only upwards).
"""

import ctypes
import gc
import logging

log = logging.getLogger(__name__)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas (``M_ARENA_MAX``, as ``MALLOC_ARENA_MAX`` would)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(ctypes.c_int(-8), ctypes.c_int(arenas))  # M_ARENA_MAX


def release_memory() -> None:
    """Collect reference cycles and hand freed heap memory back to the system."""
    found = gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    log.debug("memory released after a call (%d objects in cycles)", found)
