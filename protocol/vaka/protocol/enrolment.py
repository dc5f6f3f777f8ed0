"""The enrolment subtree: a unit without an identity asks for one.

A unit on a generic image makes its own key pair, derives a short *enrolment code* from the
public key, and — connected with the low-privilege claim identity on the broker's enrolment
listener, its client id being the code — publishes a signing request on
``vaka/v1/enrol/<code>/csr``. When a technician approves the code, central answers on
``vaka/v1/enrol/<code>/cert``. The code binds the request to the key: central refuses a request
whose key does not hash to the code it came under.
"""

import base64
import hashlib
import re
from typing import Annotated, Literal

from pydantic import Field

from vaka.errors import BadTopic
from vaka.protocol.messages import _Envelope, _Strict, decode_model
from vaka.protocol.topics import DEVICE_ID_PATTERN, TOPIC_ROOT

ENROL_ROOT = f"{TOPIC_ROOT}/enrol"
CODE_LENGTH = 10
_CODE_RE = re.compile(rf"[A-Z2-7]{{{CODE_LENGTH}}}")

Pem = Annotated[str, Field(min_length=1, max_length=8 * 1024)]


def enrolment_code(public_key_der: bytes) -> str:
    """The code of a public key (SubjectPublicKeyInfo DER): 10 base32 characters, 50 bits."""
    digest = hashlib.sha256(public_key_der).digest()
    return base64.b32encode(digest).decode()[:CODE_LENGTH]


def normalise_code(text: str) -> str:
    """A code as typed by a person (any case, with hyphens or spaces) in its canonical form."""
    code = re.sub(r"[\s-]", "", text).upper()
    if not _CODE_RE.fullmatch(code):
        raise BadTopic(
            f"{text[:40]!r} is not an enrolment code: expected {CODE_LENGTH} letters A-Z and "
            "digits 2-7, e.g. ABCDE-FGH23"
        )
    return code


def display_code(code: str) -> str:
    """The code as shown on a screen or label: ``ABCDE-FGH23``."""
    return f"{code[:5]}-{code[5:]}"


def enrol_topic(code: str, leaf: Literal["csr", "cert"]) -> str:
    """The topic of a unit's request (``csr``) or of central's answer (``cert``)."""
    return f"{ENROL_ROOT}/{normalise_code(code)}/{leaf}"


def parse_enrol_topic(topic: str) -> tuple[str, str]:
    """``(code, leaf)`` of an enrolment topic, or :class:`BadTopic`."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != ENROL_ROOT or parts[4] not in ("csr", "cert"):
        raise BadTopic(f"topic {topic[:120]!r} is not an enrolment topic")
    return normalise_code(parts[3]), parts[4]


class EnrolRequestPayload(_Strict):
    """A unit's certificate signing request (PEM) and what it is."""

    csr: Pem
    profile: Literal["tv", "nightcam"]
    agent_version: Annotated[str, Field(max_length=64)]


class EnrolResponsePayload(_Strict):
    """Central's answer: the unit's id and its certificate chain (leaf + issuing CA, PEM)."""

    unit_id: Annotated[str, Field(pattern=f"^{DEVICE_ID_PATTERN}$")]
    cert_chain: Pem


class EnrolRequestMessage(_Envelope):
    """Envelope for :class:`EnrolRequestPayload`."""

    type: Literal["enrol_request"] = "enrol_request"
    payload: EnrolRequestPayload


class EnrolResponseMessage(_Envelope):
    """Envelope for :class:`EnrolResponsePayload`."""

    type: Literal["enrol_response"] = "enrol_response"
    payload: EnrolResponsePayload


def decode_enrolment(
    raw: bytes | bytearray, leaf: str
) -> EnrolRequestMessage | EnrolResponseMessage:
    """Validate an enrolment message for its topic leaf; :class:`BadMessage` says why."""
    if leaf == "csr":
        return decode_model(raw, EnrolRequestMessage)
    return decode_model(raw, EnrolResponseMessage)
