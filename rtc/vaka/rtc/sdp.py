"""SDP checks at the boundary and the DTLS fingerprints an SDP announces.

A call ticket names the caller's DTLS certificate fingerprint; the SDP that arrives over
signalling must carry the same one (DTLS-SRTP then proves the peer holds that certificate).
Parsing uses aiortc's own parser, so the fingerprints we extract are exactly the ones aiortc
will check the peer's certificate against.
"""

from __future__ import annotations

import logging

from aiortc.sdp import SessionDescription

from vaka.errors import CallError

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 16 * 1024
"""Largest SDP accepted (UTF-8 bytes). Ours are ~2-5 kB; a browser's with many codecs ~8 kB."""


class BadSdp(CallError, ValueError):
    """An SDP was refused: oversize, empty or not parseable."""


def _parse(sdp: str) -> SessionDescription:
    """Parse with aiortc, translating its assertion and lookup errors into :class:`BadSdp`."""
    try:
        return SessionDescription.parse(sdp)
    except AssertionError as err:
        raise BadSdp("SDP could not be parsed: a line is malformed") from err
    except (ValueError, KeyError, IndexError, StopIteration, TypeError) as err:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise BadSdp(f"SDP could not be parsed: {reason}") from err


def _check(sdp: str) -> SessionDescription:
    if not isinstance(sdp, str):
        raise BadSdp(f"SDP must be text, got {type(sdp).__name__}")
    size = len(sdp.encode("utf-8", errors="replace"))
    if size > MAX_SDP_BYTES:
        raise BadSdp(f"SDP is {size} bytes, more than the {MAX_SDP_BYTES} allowed")
    if not sdp.strip():
        raise BadSdp("SDP is empty")
    first = sdp.lstrip().splitlines()[0].strip()
    if first != "v=0":
        raise BadSdp(f"SDP could not be parsed: it must start with 'v=0', not {first[:20]!r}")
    session = _parse(sdp)
    if not session.media:
        raise BadSdp("SDP could not be parsed: it has no media section ('m=' line)")
    return session


def check_sdp(sdp: str) -> str:
    """Return ``sdp`` unchanged if it is a plausible session description, else raise.

    :raises BadSdp: (a ``ValueError``) with a reason a support person can read — empty,
        more than :data:`MAX_SDP_BYTES`, not starting with ``v=0``, no media section, or
        refused by aiortc's parser.
    """
    _check(sdp)
    return sdp


def sdp_fingerprints(sdp: str) -> list[tuple[str, str]]:
    """The DTLS fingerprints in ``sdp`` as ``(algorithm, VALUE)``, in order, without repeats.

    Algorithms come out lower-case (``"sha-256"``), values upper-case hex with colons, from
    ``a=fingerprint:`` lines at session or media level (aiortc copies session-level ones into
    each media section, as RFC 8122 says; repeats are dropped). A media section without
    ``a=setup`` has no DTLS parameters for aiortc and contributes none.

    :raises BadSdp: if ``sdp`` does not pass :func:`check_sdp`.
    """
    session = _check(sdp)
    found: list[tuple[str, str]] = []
    for media in session.media:
        if media.dtls is None:
            continue
        for fingerprint in media.dtls.fingerprints:
            item = (fingerprint.algorithm.lower(), fingerprint.value.upper())
            if item not in found:
                found.append(item)
    return found
