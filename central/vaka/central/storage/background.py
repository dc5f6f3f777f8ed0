"""Database work that follows units coming online, on a thread of its own, gathered.

When central (re)connects, the broker hands it every unit's retained "online" state at once:
thousands of them. Each starts a little database work (an enrolling unit becomes active; the
messages a unit may have missed are looked up). On asyncio's default executor that work queued
in front of everything else the event loop sends to a thread, and a nurse's night check waited
behind it: the permission check and the relay credential of a dial dialled during a restart's
drain took 0.7-1.5 s instead of 10 ms. Here it takes its turn on one thread, in arrival order,
and the default executor stays free for what people wait for.

Two more things keep it small:

* **Gathered** (:class:`Gathered`): the units asked about while the thread was busy go to it in
  one statement (``... WHERE device_id IN (...)``), not one each: a restart's 2000 "online"
  states cost a handful of statements instead of 4000.
* **Calls first**: the thread takes no new work while a call is being set up
  (``may_run``, the health connection's gate, :mod:`vaka.central.broker.calls_first`); a unit's
  bookkeeping waits a moment, a nurse does not.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: the thread's name, as logs and tests see it
THREAD_NAME = "unit-bookkeeping"
#: the most units one gathered statement names (well inside SQLite's and PostgreSQL's limits)
MOST_PER_STATEMENT = 500


class Bookkeeping:
    """One thread for per-unit bookkeeping; :meth:`run` is ``asyncio.to_thread`` onto it."""

    def __init__(self, may_run: asyncio.Event | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        #: set while bookkeeping may start work (cleared while calls are being set up)
        self.may_run = may_run

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the bookkeeping thread, after what was asked before it."""
        if self.may_run is not None:
            await self.may_run.wait()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Drop what has not started; what runs finishes on its own. Safe twice."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Gathered(Generic[T]):
    """One kind of per-unit work, asked unit by unit and done for many units at once.

    ``many(units)`` runs on the bookkeeping thread and answers ``{unit: result}`` (a unit it
    leaves out gets ``default``; a unit asked twice in one call gets its answer the first time
    and ``default`` after: the work was done once). ``await gathered(unit)`` waits for its
    unit's answer: the units asked while the thread was busy (or in the same turn of the loop)
    go in one call of ``many``, at most :data:`MOST_PER_STATEMENT` at a time, in the order they
    were asked. A failure of ``many`` is raised to each of its units' callers.
    """

    def __init__(
        self, bookkeeping: Bookkeeping, many: Callable[[list[str]], dict[str, T]], default: T
    ) -> None:
        self.bookkeeping = bookkeeping
        self.many = many
        self.default = default
        self._asked: list[tuple[str, asyncio.Future[T]]] = []
        self._draining: asyncio.Task[None] | None = None
        #: calls of ``many`` so far (a restart's thousands of units in a handful)
        self.calls = 0

    async def __call__(self, unit: str) -> T:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        self._asked.append((unit, answer))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self._asked:
                batch = self._asked[:MOST_PER_STATEMENT]
                del self._asked[:MOST_PER_STATEMENT]
                units = list(dict.fromkeys(unit for unit, _ in batch))
                self.calls += 1
                try:
                    answers = await self.bookkeeping.run(self.many, units)
                except Exception as err:  # each caller decides what a failure means to it
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(err)
                    continue
                for unit, answer in batch:  # a unit asked twice: the answer once, then default
                    if not answer.done():
                        answer.set_result(answers.pop(unit, self.default))
        finally:
            self._draining = None
            for _, answer in self._asked:  # cancelled (central stops): nobody waits for ever
                answer.cancel()
            self._asked.clear()
