"""Stopping asyncio tasks for certain.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn
as the result it waits for (CPython gh-86296, fixed in 3.12). aiomqtt waits for the broker's
CONNACK that way, so cancelling a task that is just connecting may leave it running — online,
until its connection drops. :func:`cancel_and_wait` cancels again until the task has ended.
"""

import asyncio
import contextlib
from collections.abc import Iterable
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
