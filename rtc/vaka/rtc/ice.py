"""Process-wide ICE settings for aiortc: which host addresses to gather, how long to wait.

aiortc gives no knob for either, so :func:`configure_ice` patches two names in ``aioice.ice``
once, in this one place:

* ``aioice.ice.get_host_addresses`` — aioice lists every interface address except 127.0.0.1.
  Tests must keep media on loopback and a unit may want to pin one interface, so when
  host addresses are configured we return exactly those (filtered by the IP versions aioice
  asks for). ``None`` restores aioice's own choice.
* ``aioice.ice.Connection.get_component_candidates`` — it waits up to ``timeout=5`` seconds
  for server-reflexive (STUN) and relayed (TURN) candidates, and aiortc has no trickle ICE, so
  a STUN/TURN server that never answers delays every ``setLocalDescription`` by 5 s. We call
  the original with ``timeout`` bounded to ``gather_timeout_s``; candidates that arrive in
  time are kept, the rest are cancelled as aioice itself does.

And two module constants, ``aioice.ice.CONSENT_INTERVAL`` and ``CONSENT_FAILURES``: consent
freshness (RFC 7675) checks every 5 s and gives up after 6 failures, so a peer that vanished
without a word keeps a camera streaming for about 30 s. A unit must notice within seconds, so
:func:`configure_ice` checks every ``consent_interval_s`` and gives up after
``consent_failures`` missed checks in a row (each check waits 0.5 s for its answer).

And one method in ``aioice.turn``, ``TurnClientMixin.delete``: when consent fails, aioice closes
the connection and first deletes its TURN allocation, retransmitting for about 30 s when the line
is dead (which is why consent failed) — and only then reports the connection failed. A unit must
end the call at once, so the deletion is bounded to ``turn_delete_timeout_s``; coturn frees an
allocation nobody refreshes when its lifetime ends (RFC 8656 section 6).

Also :func:`rtc_configuration`: aiortc falls back to Google's public STUN server when
``RTCConfiguration.iceServers`` is ``None``; a unit must never contact a third party unasked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aioice.turn
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)

DEFAULT_GATHER_TIMEOUT_S = 0.3
"""How long to wait for STUN/TURN candidates unless told otherwise (aioice's own is 5 s)."""

DEFAULT_TURN_DELETE_TIMEOUT_S = 1.0
"""How long closing a connection waits for the TURN server to confirm a deletion."""


@dataclass
class _IceSettings:
    host_addresses: tuple[str, ...] | None = None
    gather_timeout_s: float = DEFAULT_GATHER_TIMEOUT_S
    turn_delete_timeout_s: float = DEFAULT_TURN_DELETE_TIMEOUT_S
    installed: bool = False


_settings = _IceSettings()
_original_get_host_addresses = aioice.ice.get_host_addresses
_original_get_component_candidates: Callable[..., Coroutine[Any, Any, list[Any]]] = (
    aioice.ice.Connection.get_component_candidates
)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Stand-in for ``aioice.ice.get_host_addresses`` honouring the configured addresses."""
    if _settings.host_addresses is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    chosen = []
    for address in _settings.host_addresses:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            chosen.append(address)
    return chosen


async def _get_component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: float = 5
) -> list[Any]:
    """Stand-in for ``Connection.get_component_candidates`` with a bounded STUN/TURN wait."""
    bounded = min(timeout, _settings.gather_timeout_s)
    return await _original_get_component_candidates(self, component, addresses, timeout=bounded)


_original_turn_delete: Callable[..., Coroutine[Any, Any, None]] = aioice.turn.TurnClientMixin.delete


async def _turn_delete(self: aioice.turn.TurnClientMixin) -> None:
    """Stand-in for ``TurnClientMixin.delete`` that gives up after ``turn_delete_timeout_s``.

    Cancelling the original still closes its socket (its ``finally``).
    """
    try:
        async with asyncio.timeout(_settings.turn_delete_timeout_s):
            await _original_turn_delete(self)
    except TimeoutError:
        log.info(
            "TURN allocation not confirmed deleted within %.1f s; the relay frees it at expiry",
            _settings.turn_delete_timeout_s,
        )


def configure_ice(
    host_addresses: Sequence[str] | None = None,
    gather_timeout_s: float = DEFAULT_GATHER_TIMEOUT_S,
    consent_interval_s: float = 1.0,
    consent_failures: int = 4,
    turn_delete_timeout_s: float = DEFAULT_TURN_DELETE_TIMEOUT_S,
) -> None:
    """Set, for the whole process, the ICE host addresses and the STUN/TURN gathering bound.

    :param host_addresses: gather host candidates on exactly these addresses (for example
        ``["127.0.0.1"]`` in tests); ``None`` lets aioice choose (every interface but loopback).
    :param gather_timeout_s: the longest a STUN/TURN server may delay candidate gathering.
    :param consent_interval_s: how often consent to send is checked on a live connection.
    :param consent_failures: missed consent checks in a row after which the connection closes.
    :param turn_delete_timeout_s: the longest closing waits for a TURN allocation's deletion.
    :raises ValueError: an address is not an IP address, or the timeout is not positive.

    Idempotent: the patch is installed once; later calls only change the settings, which apply
    to every peer connection that gathers afterwards.
    """
    if not gather_timeout_s > 0:
        raise ValueError(f"ICE gathering timeout must be positive, got {gather_timeout_s}")
    if not consent_interval_s > 0 or consent_failures < 1:
        raise ValueError("ICE consent interval must be positive and failures at least 1")
    if not turn_delete_timeout_s > 0:
        raise ValueError(f"TURN deletion timeout must be positive, got {turn_delete_timeout_s}")
    aioice.ice.CONSENT_INTERVAL = consent_interval_s  # type: ignore[assignment]
    aioice.ice.CONSENT_FAILURES = consent_failures
    addresses: tuple[str, ...] | None = None
    if host_addresses is not None:
        if isinstance(host_addresses, str):
            raise ValueError("ICE host addresses must be a list of addresses, not one string")
        for address in host_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError as err:
                raise ValueError(f"ICE host address {address!r} is not an IP address") from err
        addresses = tuple(host_addresses)
    _settings.host_addresses = addresses
    _settings.gather_timeout_s = gather_timeout_s
    _settings.turn_delete_timeout_s = turn_delete_timeout_s
    if not _settings.installed:
        aioice.turn.TurnClientMixin.delete = _turn_delete  # type: ignore[method-assign]
        aioice.ice.get_host_addresses = _get_host_addresses
        aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]
        _settings.installed = True
    log.info(
        "ICE host addresses %s, STUN/TURN gathering bounded to %.1f s",
        list(addresses) if addresses is not None else "chosen by aioice",
        gather_timeout_s,
    )


def ice_settings() -> tuple[tuple[str, ...] | None, float]:
    """The current ``(host_addresses, gather_timeout_s)``, for health reports and tests."""
    return _settings.host_addresses, _settings.gather_timeout_s


def rtc_configuration(ice_servers: Sequence[RTCIceServer] = ()) -> RTCConfiguration:
    """An ``RTCConfiguration`` with exactly ``ice_servers`` — none by default.

    aiortc substitutes ``stun:stun.l.google.com:19302`` when ``iceServers`` is ``None``; passing
    a list (even an empty one) keeps a unit from contacting a server nobody configured.
    """
    return RTCConfiguration(iceServers=list(ice_servers))


def reset_ice() -> None:
    """Put aioice back exactly as it was (its host addresses, its 5 s wait, its TURN deletion)."""
    if _settings.installed:
        aioice.turn.TurnClientMixin.delete = _original_turn_delete  # type: ignore[method-assign]
        aioice.ice.get_host_addresses = _original_get_host_addresses
        aioice.ice.Connection.get_component_candidates = _original_get_component_candidates  # type: ignore[method-assign]
    _settings.host_addresses = None
    _settings.gather_timeout_s = DEFAULT_GATHER_TIMEOUT_S
    _settings.turn_delete_timeout_s = DEFAULT_TURN_DELETE_TIMEOUT_S
    _settings.installed = False
