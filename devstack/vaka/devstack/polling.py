"""Waiting for a condition of the running stack (a unit online, a shutter closed, an audit row)."""

import asyncio
import time
from collections.abc import Callable


class WaitTimeout(AssertionError, TimeoutError):
    """The condition did not hold in time (an assertion failure where a test waits)."""


async def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.02, what: str = ""
) -> float:
    """Poll ``predicate`` (sync, or returning an awaitable) until truthy; the seconds it took."""
    started = time.monotonic()
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)
