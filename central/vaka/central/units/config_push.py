"""Central's side of config bundles: build one unit's bundle, sign it, deliver it retained.

The bundle travels as a retained :class:`~vaka.protocol.messages.ConfigMessage` on the unit's
``config`` topic, so a unit that is offline picks it up when it next connects. The unit verifies
it with central's pinned config key and reports the outcome as an event (``info`` with
``config: applied`` or ``refused`` with the reason). Each push is recorded in the audit trail.
"""

import asyncio
import logging
import time
from typing import Protocol

from joserfc.jwk import OKPKey
from pydantic import ValidationError

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import CentralLink
from vaka.errors import ProvisioningError
from vaka.protocol.messages import ConfigMessage, ConfigPayload, describe_problems
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import BadBundle, UnitConfigBundle, sign_bundle

log = logging.getLogger(__name__)


class Central(Protocol):
    """What a config push needs of central: its broker session and its audit trail (the service
    and the HTTP dependencies both have them)."""

    @property
    def link(self) -> CentralLink:
        """Central's broker session."""

    @property
    def audit(self) -> AuditLog:
        """The audit trail."""


class WrongProfile(ProvisioningError, ValueError):
    """A config's profile is not the unit's (a unit refuses such a bundle: refused here first)."""


class UnknownUnit(ProvisioningError, LookupError):
    """A config for a unit central has never heard of."""


def check_profile(
    unit: str, profile: str, running: str | None, assigned: str | None, *, known: bool
) -> None:
    """Refuse a ``profile`` config for ``unit`` unless it fits the unit.

    ``running`` is the profile the unit reports it runs (its image: the truth, the unit would
    refuse anything else), ``assigned`` the one it was enrolled or assigned with (for a unit that
    has not connected since); ``known`` whether central knows the unit at all (it has connected,
    or it is assigned to a citizen). Raises :class:`WrongProfile`, or :class:`UnknownUnit`. A
    known unit whose profile central has not learnt yet passes: the unit checks it itself.
    """
    if not known:
        raise UnknownUnit(
            f"central knows no unit {unit}: it has never connected and is not assigned "
            "(check the unit id)"
        )
    expected = running or assigned
    if expected is not None and profile != expected:
        raise WrongProfile(
            f"unit {unit} is a {expected} unit: a {profile} config does not fit it (the unit "
            f"would refuse it); push a {expected} config"
        )


def build_bundle(
    unit: str,
    version: int,
    profile: str,
    ticket_key: OKPKey | str,
    *,
    issued_at: int | None = None,
    **settings: object,
) -> UnitConfigBundle:
    """One unit's bundle, issued now unless ``issued_at`` says otherwise.

    ``ticket_key`` is central's ticket key (only its public half goes in) or that public key as
    PEM text; ``settings`` are the further fields of :class:`UnitConfigBundle`
    (``health_interval_s``, ``call_max_duration_s``, ``auto_answer``, ``ice_servers``,
    ``language``, the TV's ``night_from``/``night_until``, ``day_calls``, ``day_phone`` and
    ``timezone``). Raises :class:`BadBundle` listing every invalid field.
    """
    pem = (
        ticket_key.as_pem(private=False).decode() if isinstance(ticket_key, OKPKey) else ticket_key
    )
    data = {
        "unit": unit,
        "version": version,
        "issued_at": int(time.time()) if issued_at is None else issued_at,
        "profile": profile,
        "ticket_key": pem,
        **settings,
    }
    try:
        return UnitConfigBundle.model_validate(data)
    except ValidationError as err:
        raise BadBundle(f"config bundle is invalid: {describe_problems(err, 'bundle')}") from None


def config_message(bundle: UnitConfigBundle, key: OKPKey) -> ConfigMessage:
    """The signed bundle in its envelope, as it goes on the unit's ``config`` topic."""
    return ConfigMessage(
        payload=ConfigPayload(version=bundle.version, bundle=sign_bundle(bundle, key))
    )


async def push_config(
    central: Central,
    unit_id: str,
    bundle: UnitConfigBundle,
    key: OKPKey,
    *,
    actor: str | None = None,
) -> None:
    """Sign ``bundle`` with central's config key and publish it retained to ``unit_id``.

    Raises :class:`BadBundle` if the bundle names another unit, and
    :class:`~vaka.errors.LinkError` if central is not connected to the broker.
    """
    if bundle.unit != unit_id:
        raise BadBundle(f"config is for unit {bundle.unit}, not {unit_id}")
    message = config_message(bundle, key)
    await central.link.publish_to_unit(unit_id, Channel.CONFIG, message, retain=True)
    log.info("config version %d pushed to %s", bundle.version, unit_id)
    await asyncio.to_thread(
        central.audit.append,
        "config_pushed",
        actor=actor,
        unit=unit_id,
        version=bundle.version,
        profile=bundle.profile,
    )
