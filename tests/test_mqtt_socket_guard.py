"""A write queued in the same loop turn as the disconnect never reaches a closed socket."""

import asyncio
import contextlib
from typing import Any

import aiomqtt

from vaka.devstack.broker import Broker
from vaka.protocol.mqttio import guard_socket_writes


async def _loop_errors_of_a_write_then_close(client: aiomqtt.Client) -> list[str]:
    """Queue a message and close the socket in one turn; what the event loop reported."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(str(context.get("exception"))))
    try:
        with contextlib.suppress(aiomqtt.MqttError):
            async with client:
                paho: Any = client._client
                paho.publish("vaka/v1/dev/u-guard/health", b"{}", qos=0)  # a write is registered
                paho._sock_close()  # and the socket closes before the loop runs it
                # The registration runs on the next turns: give it a few.
                for _ in range(5):
                    await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    return errors


async def test_unguarded_client_registers_a_closed_socket(broker: Broker) -> None:
    # The fault the guard is for, shown on aiomqtt as shipped.
    errors = await _loop_errors_of_a_write_then_close(broker.client("u-guard"))
    assert any("Bad file descriptor" in e for e in errors), errors


async def test_guarded_client_skips_the_closed_socket(broker: Broker) -> None:
    errors = await _loop_errors_of_a_write_then_close(guard_socket_writes(broker.client("u-guard")))
    assert errors == []
