"""Signed messages for the TV: central signs, the unit verifies, and every refusal says why."""

import base64
import io
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from PIL import Image

from vaka.provisioning.bundles import UnitConfigBundle, sign_bundle, verify_bundle
from vaka.provisioning.messages import (
    MAX_PICTURE_BYTES,
    MESSAGE_TYP,
    BadMessageToken,
    SignedMessage,
    make_message,
    sign_message,
    verify_message,
)
from vaka.provisioning.orders import sign_order
from vaka.provisioning.tickets import new_ticket_key

UNIT = "u-tv"
OTHER = "u-tv-next-door"


@pytest.fixture(scope="module")
def key() -> OKPKey:
    """Central's config-signing key."""
    return new_ticket_key()


def jpeg(width: int = 320, height: int = 180, quality: int = 80, noise: bool = False) -> bytes:
    """A JPEG of the given size (``noise`` makes it compress badly, i.e. large)."""
    if noise:
        import os

        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (30, 120, 200))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    data: dict[str, Any] = {
        "unit": UNIT,
        "mid": "m-1",
        "kind": "reminder",
        "text": "Medicin kl. 14:00 — glöm inte vattnet",
        "sender_name": "Anna Andersson",
        "iat": now,
        "exp": now + 3600,
        "ack_within_s": 600,
    }
    data.update(overrides)
    return data


def raw_token(data: dict[str, Any], key: OKPKey, typ: str = MESSAGE_TYP) -> str:
    """Signed without the model's checks, as a forger with the key (or a buggy central) would."""
    return jwt.encode({"alg": "Ed25519", "typ": typ}, data, key, algorithms=["Ed25519"])


def test_a_signed_message_verifies(key: OKPKey) -> None:
    picture = jpeg()
    message = make_message(**claims(picture=b64(picture)))
    token = sign_message(message, key)
    public = OKPKey.import_key(key.as_pem(private=False))
    checked = verify_message(token, public, UNIT)
    assert checked == message
    assert checked.picture_bytes() == picture
    assert checked.ack_within_s == 600
    assert "picture" not in repr(checked)


def test_defaults_mid_iat_and_ack_window() -> None:
    now = int(time.time())
    message = make_message(unit=UNIT, kind="message", text="Hej!", sender_name="Bo", exp=now + 60)
    assert message.mid.startswith("m-") and abs(message.iat - now) <= 1
    assert message.ack_within_s == 900


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: sign_message(make_message(**claims()), new_ticket_key()), "bad signature"),
        (
            lambda k: sign_message(make_message(**claims(unit=OTHER)), k),
            f"message is for unit {OTHER}, not this unit ({UNIT})",
        ),
        (
            lambda k: sign_message(
                make_message(**claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
                k,
            ),
            "message expired",
        ),
        (
            lambda k: raw_token(claims(picture=b64(b"GIF89a" + bytes(200))), k),
            "message is invalid: picture: Value error, picture is not a JPEG image",
        ),
        (
            lambda k: raw_token(claims(picture="not base64!"), k),
            "message is invalid: picture: Value error, picture is not valid base64",
        ),
        (
            lambda k: raw_token(claims(picture=b64(jpeg(1920, 1080, 10))), k),
            "message is invalid: picture: Value error, picture is 1920x1080, larger than 1280x720",
        ),
        (
            lambda k: raw_token(claims(picture=b64(jpeg()[:400])), k),
            "message is invalid: picture: Value error, picture does not decode as a JPEG",
        ),
        (
            lambda k: raw_token(claims(text="x" * 501, shell="rm -rf /"), k),
            "message is invalid: text: String should have at most 500 characters; "
            "shell: Extra inputs are not permitted",
        ),
        (
            lambda k: raw_token(claims(exp=0, iat=10), k),
            "message is invalid: message: Value error, exp must be after iat",
        ),
        (lambda k: "not.a.jws", "unreadable message (decode_error: Invalid header)"),
        (lambda k: "", "no message token"),
        (lambda k: "x" * 70_000, "message token is over 61440 characters"),
    ],
)
def test_refusals_say_why(key: OKPKey, make: Any, reason: str) -> None:
    with pytest.raises(BadMessageToken) as err:
        verify_message(make(key), key, UNIT)
    assert str(err.value).startswith(reason)


def test_an_oversize_picture_is_refused_on_both_sides(key: OKPKey) -> None:
    big = jpeg(150, 150, 100, noise=True)
    assert len(big) > MAX_PICTURE_BYTES
    with pytest.raises(BadMessageToken) as err:
        make_message(**claims(picture=b64(big)))
    assert str(err.value) == (
        f"message is invalid: picture: Value error, picture is {len(big)} bytes, "
        f"over the {MAX_PICTURE_BYTES}-byte limit"
    )
    # Signed anyway (a central without the check): too large for the unit to even open.
    with pytest.raises(BadMessageToken, match=r"^message token is over 61440 characters$"):
        verify_message(raw_token(claims(picture=b64(big)), key), key, UNIT)


def test_a_bad_picture_names_the_message(key: OKPKey) -> None:
    with pytest.raises(BadMessageToken) as err:
        verify_message(raw_token(claims(picture=b64(b"GIF89a")), key), key, UNIT)
    assert err.value.mid == "m-1"  # the signature was good: the refusal names the message


def test_a_forged_message_names_no_mid(key: OKPKey) -> None:
    token = sign_message(make_message(**claims()), new_ticket_key())
    with pytest.raises(BadMessageToken) as err:
        verify_message(token, key, UNIT)
    assert err.value.mid is None


def test_signing_refuses_what_would_not_fit_on_the_wire(key: OKPKey) -> None:
    # 36 KiB of JPEG passes the picture limit but not the 60 KiB token (base64 twice).
    picture = jpeg(130, 130, 100, noise=True)
    assert 34_000 < len(picture) <= MAX_PICTURE_BYTES
    with pytest.raises(BadMessageToken, match="over 61440: send a smaller picture"):
        sign_message(make_message(**claims(picture=b64(picture))), key)


def test_other_tokens_signed_with_the_same_key_do_not_pass(key: OKPKey) -> None:
    with pytest.raises(BadMessageToken, match=r"^not a message$"):
        verify_message(sign_order(UNIT, "renew", key), key, UNIT)
    bundle = UnitConfigBundle(
        unit=UNIT, version=1, issued_at=0, profile="tv",
        ticket_key=new_ticket_key().as_pem(private=False).decode(),
    )  # fmt: skip
    with pytest.raises(BadMessageToken, match=r"^not a message$"):
        verify_message(sign_bundle(bundle, key), key, UNIT)
    message_token = sign_message(make_message(**claims()), key)
    with pytest.raises(ValueError, match=r"^not a config bundle$"):
        verify_bundle(message_token, key, UNIT)


def test_make_message_lists_every_problem() -> None:
    with pytest.raises(BadMessageToken) as err:
        make_message(unit="U", kind="poem", text="", sender_name="x" * 200, exp=1)
    text = str(err.value)
    for field in ("unit", "kind", "text", "sender_name"):
        assert f"{field}: " in text
    assert isinstance(err.value, ValueError)
    assert SignedMessage.model_fields["text"].metadata  # limits live on the model
