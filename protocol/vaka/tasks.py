"""Stopping asyncio tasks for certain, and an owner's set of background tasks.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn
as the result it waits for (CPython gh-86296, fixed in 3.12). aiomqtt waits for the broker's
CONNACK that way, so cancelling a task that is just connecting may leave it running — online,
until its connection drops. :func:`cancel_and_wait` cancels again until the task has ended.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable["asyncio.Task[Any]"], retry_s: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again every ``retry_s``
    seconds a task that swallowed it. Their results and exceptions are discarded."""
    pending = {task for task in tasks if task is not asyncio.current_task()}
    while pending := {task for task in pending if not task.done()}:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()


class TaskSet:
    """The background tasks of one owner: a task that fails is logged (``what`` says whose),
    and :meth:`close` ends every one still running."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        """Run ``coro`` in the background, kept until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s failed", self._what, exc_info=task.exception())

    async def close(self) -> None:
        """Cancel the tasks still running and wait until they have ended. Safe twice."""
        await cancel_and_wait(list(self._tasks))
