"""The one fix every MQTT connection of Vaka's takes: no write scheduled on a closed socket.

aiomqtt registers paho's "socket has data to write" with ``call_soon_threadsafe(add_writer,
fileno, ...)``: the registration runs on the next loop turn. A message queued in the same turn
as the disconnect (a PUBACK, a reply) then registers a socket that is already closed, and the
loop logs ``OSError: [Errno 9] Bad file descriptor`` with a traceback at every shutdown, or, if
the descriptor number was reused, watches another socket. :func:`guard_socket_writes` does the
same registration, but only while the socket is still the client's open socket.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

C = TypeVar("C")


def guard_socket_writes(client: C) -> C:
    """Give ``client`` (an ``aiomqtt.Client``) the guarded write registration; returns it."""
    guarded: Any = client
    loop: asyncio.AbstractEventLoop = guarded._loop

    def register(paho_client: Any, _userdata: Any, sock: Any) -> None:
        def write() -> None:
            # loop_write may raise (a broken pipe): the connection is gone, as aiomqtt does.
            try:
                paho_client.loop_write()
            except Exception as exc:
                disconnected: asyncio.Future[Any] = guarded._disconnected  # new per connection
                if not disconnected.done():
                    disconnected.set_exception(exc)

        def add() -> None:
            fileno = sock.fileno()
            if fileno >= 0 and paho_client.socket() is sock:
                loop.add_writer(fileno, write)

        loop.call_soon_threadsafe(add)

    guarded._client.on_socket_register_write = register
    return client
