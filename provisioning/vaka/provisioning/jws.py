"""Opening the compact JWS tokens central signs (call tickets, config bundles, orders, messages):
size, signature and token type checked the same way for each, every refusal a readable reason.

Each token type has its own ``typ`` header, so one kind can never pass as another.
"""

from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

ALGORITHM = "Ed25519"
"""The JWS ``alg`` of every token: RFC 9864's fully specified name for EdDSA on Ed25519."""


@dataclass(frozen=True)
class TokenKind:
    """How one kind of token is named in refusals, and its ``typ`` header."""

    typ: str
    name: str
    "What the token is called: ``no <name>``, ``<name> is over N characters``."
    unreadable: str
    "``unreadable <unreadable> (...)``."
    not_one: str
    "The refusal when the ``typ`` is another kind's: ``not a call ticket``."
    max_chars: int


def open_token(
    token: str | None, key: OKPKey, kind: TokenKind, error: type[Exception]
) -> dict[str, Any]:
    """The claims of a token of ``kind`` signed by ``key``; raises ``error(reason)`` if it is
    missing, too long, not signed by ``key``, unreadable or of another kind."""
    if not token:
        raise error(f"no {kind.name}")
    if len(token) > kind.max_chars:
        raise error(f"{kind.name} is over {kind.max_chars} characters")
    try:
        decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
    except JoseError as err:
        reason = "bad signature" if "signature" in str(err) else f"unreadable {kind.unreadable}"
        raise error(reason if reason == "bad signature" else f"{reason} ({err})") from None
    if decoded.header.get("typ") != kind.typ:
        raise error(kind.not_one)
    return dict(decoded.claims)
