"""cancel_and_wait ends a task that swallowed its cancellation (as asyncio.wait_for on Python
3.11 does when the result arrives in the same loop turn, e.g. aiomqtt's CONNACK)."""

import asyncio

from vaka.tasks import cancel_and_wait


async def test_a_swallowed_cancellation_is_repeated() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 1:
                    continue  # swallowed, as the 3.11 wait_for race does
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], retry_s=0.05), 5)
    assert task.cancelled() and cancels == 2


async def test_finished_and_failed_tasks_are_left_alone() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    done = asyncio.create_task(asyncio.sleep(0))
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0.01)
    await cancel_and_wait([done, failed])  # does not raise the task's error
    assert done.done() and not done.cancelled() and failed.exception() is not None
