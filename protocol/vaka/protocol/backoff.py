"""Reconnect delays: exponential backoff with jitter."""

import random
import socket

#: Socket options for every MQTT connection: signalling is small and latency-bound, so Nagle's
#: algorithm (with the peer's delayed ACK) would hold messages back by tens of milliseconds.
TCP_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def backoff_delay(
    attempt: int, minimum: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential, capped, jittered.

    The delay lies in ``[cap/2, cap]`` with ``cap = min(maximum, minimum * 2**attempt)``, so a
    fleet that lost the broker at the same moment does not come back in lock step.
    """
    cap = min(maximum, minimum * (2 ** min(attempt, 32)))
    return cap * (rng or random).uniform(0.5, 1.0)
