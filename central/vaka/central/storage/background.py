"""Database work that follows units coming online, on a thread of its own.

When central (re)connects, the broker hands it every unit's retained "online" state at once:
thousands of them. Each starts a little database work (an enrolling unit becomes active; the
messages a unit may have missed are looked up). On asyncio's default executor that work queued
in front of everything else the event loop sends to a thread, and a nurse's night check waited
behind it: the permission check and the relay credential of a dial dialled during a restart's
drain took 0.7-1.5 s instead of 10 ms. Here it takes its turn on one thread, in arrival order,
and the default executor stays free for what people wait for.
"""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: the thread's name, as logs and tests see it
THREAD_NAME = "unit-bookkeeping"


class Bookkeeping:
    """One thread for per-unit bookkeeping; :meth:`run` is ``asyncio.to_thread`` onto it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the bookkeeping thread, after what was asked before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Drop what has not started; what runs finishes on its own. Safe twice."""
        self._pool.shutdown(wait=False, cancel_futures=True)
