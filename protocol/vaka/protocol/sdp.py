"""The little of SDP that central and the unit both need: size and DTLS fingerprints.

Central does not parse media; it only reads the caller's fingerprint into the ticket. The unit
compares the fingerprint of the offer it receives with the ticket's.
"""

import re

from vaka.errors import BadMessage

MAX_SDP_BYTES = 16 * 1024

_FINGERPRINT = re.compile(r"^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


def check_sdp(sdp: str | None) -> str:
    """Return ``sdp`` if it is a plausible session description, else raise :class:`BadMessage`."""
    if not sdp:
        raise BadMessage("SDP is empty")
    size = len(sdp.encode())
    if size > MAX_SDP_BYTES:
        raise BadMessage(f"SDP is {size} bytes, over the {MAX_SDP_BYTES}-byte limit")
    if not sdp.startswith("v=0"):
        raise BadMessage("SDP does not start with v=0")
    return sdp


def sdp_fingerprints(sdp: str) -> list[str]:
    """Every DTLS fingerprint in ``sdp`` as ``"sha-256 AB:CD:..."`` (algorithm lower-case)."""
    return [f"{alg.lower()} {value.upper()}" for alg, value in _FINGERPRINT.findall(sdp)]


def preferred_fingerprint(sdp: str) -> str:
    """The sha-256 fingerprint of ``sdp`` (the one a ticket names), or raise :class:`BadMessage`."""
    for fingerprint in sdp_fingerprints(sdp):
        if fingerprint.startswith("sha-256 "):
            return fingerprint
    raise BadMessage("SDP carries no sha-256 DTLS fingerprint")
