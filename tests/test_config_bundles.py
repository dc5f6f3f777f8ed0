"""Signed config bundles: central signs, the unit verifies, applies, keeps the last good one.

Unit tests pair signer and verifier in memory; the end-to-end tests push bundles through a real
Mosquitto to an in-process agent and read the unit's events back from the broker.
"""

import asyncio
import stat
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from tests.conftest import collecting
from tests.nightcheck import UNIT, agent_config
from vaka.agent.app import Agent
from vaka.agent.config import parse_config
from vaka.agent.config_store import CONFIG_FILE, ConfigStore
from vaka.central.service import CentralService
from vaka.central.units.config_push import build_bundle, config_message, push_config
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent
from vaka.errors import ConfigError
from vaka.protocol import decode
from vaka.protocol.messages import EventMessage
from vaka.protocol.topics import Channel, device_topic
from vaka.provisioning.bundles import (
    BadBundle,
    UnitConfigBundle,
    load_config_key,
    sign_bundle,
    verify_bundle,
)
from vaka.provisioning.tickets import TicketClaims, new_ticket_key, sign_ticket

OTHER = "u-elsewhere"


@pytest.fixture(scope="module")
def config_key() -> OKPKey:
    """Central's config-signing key for the in-memory tests."""
    return new_ticket_key()


@pytest.fixture(scope="module")
def ticket_key() -> OKPKey:
    """Central's ticket key, whose public half travels in the bundle."""
    return new_ticket_key()


def bundle(
    ticket_key: OKPKey, version: int = 1, unit: str = UNIT, **settings: Any
) -> UnitConfigBundle:
    return build_bundle(unit, version, "nightcam", ticket_key, **settings)


# ---------------------------------------------------------------- sign and verify


def test_a_signed_bundle_verifies(config_key: OKPKey, ticket_key: OKPKey) -> None:
    original = bundle(
        ticket_key,
        3,
        health_interval_s=12,
        language="da",
        auto_answer=[{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 5}],
        ice_servers=[
            {"urls": ["stun:turn.example:3478"]},
            {"urls": ["turn:turn.example:3478"], "username": "u"},  # no credential: allowed
        ],
    )
    token = sign_bundle(original, config_key)
    assert jwt.decode(token, config_key, algorithms=["Ed25519"]).header["typ"] == "vaka-config+jwt"
    checked = verify_bundle(token, config_key, UNIT, current_version=2)
    assert checked == original
    assert checked.ticket_public_key().as_pem() == ticket_key.as_pem(private=False)


STATIC_TURN = {"urls": ["turn:turn.example:3478"], "username": "u", "credential": "s3cret"}
NO_STATIC_SECRET = (
    "Value error, a TURN server in the unit's configuration must not carry a credential: "
    "central hands out per-call credentials"
)


def test_a_relay_secret_is_refused_in_a_bundle(config_key: OKPKey, ticket_key: OKPKey) -> None:
    """Central will not build one, and a unit refuses one signed anyway: per-call credentials
    come in the ticket; a secret in the configuration would outlive every call."""
    with pytest.raises(BadBundle) as built:
        bundle(ticket_key, ice_servers=[STATIC_TURN])
    assert f"ice_servers.0: {NO_STATIC_SECRET}" in str(built.value)
    claims = bundle(ticket_key).model_dump(mode="json")
    claims["ice_servers"] = [STATIC_TURN]
    token = jwt.encode(
        {"alg": "Ed25519", "typ": "vaka-config+jwt"}, claims, config_key, algorithms=["Ed25519"]
    )
    with pytest.raises(BadBundle) as verified:
        verify_bundle(token, config_key, UNIT)
    assert str(verified.value) == f"config bundle is invalid: ice_servers.0: {NO_STATIC_SECRET}"
    assert "s3cret" not in str(verified.value)


def test_a_relay_secret_is_refused_in_the_units_configuration(
    broker: Broker, tmp_path: Path
) -> None:
    """The agent's own ``[[media.ice_servers]]``: a credential stops it at load, with the reason;
    STUN and a TURN entry without a credential load."""
    config = agent_config(broker, ice_servers=[{"urls": ["stun:stun.example:3478"]}, STATIC_TURN])
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert str(err.value) == f"config is invalid: media.ice_servers.1: {NO_STATIC_SECRET}"
    assert "s3cret" not in str(err.value)
    stun, turn = ["stun:stun.example:3478"], ["turn:turn.example:3478"]
    allowed = [{"urls": stun}, {"urls": turn, "username": "u"}]
    media = parse_config(agent_config(broker, ice_servers=allowed)).media
    assert [s.urls for s in media.ice_servers] == [stun, turn]


@pytest.mark.parametrize(
    ("make", "current", "reason"),
    [
        (lambda ck, tk: sign_bundle(bundle(tk), new_ticket_key()), 0, "bad signature"),
        (
            lambda ck, tk: sign_bundle(bundle(tk, unit=OTHER), ck),
            0,
            f"config is for unit {OTHER}, not this unit ({UNIT})",
        ),
        (
            lambda ck, tk: sign_bundle(bundle(tk, 4), ck),
            4,
            "config version 4 is not newer than the active version 4",
        ),
        (
            lambda ck, tk: sign_bundle(bundle(tk, 2), ck),
            5,
            "config version 2 is not newer than the active version 5",
        ),
        (lambda ck, tk: "", 0, "no config bundle"),
        (lambda ck, tk: "x" * 40_000, 0, "config bundle is over 32768 characters"),
        (lambda ck, tk: "not.a.jws", 0, "unreadable config (decode_error: Invalid header)"),
    ],
)
def test_refusals_say_why(
    config_key: OKPKey, ticket_key: OKPKey, make: Any, current: int, reason: str
) -> None:
    token = make(config_key, ticket_key)
    with pytest.raises(BadBundle) as err:
        verify_bundle(token, config_key, UNIT, current)
    assert str(err.value) == reason


def test_a_call_ticket_is_not_a_config_bundle(config_key: OKPKey) -> None:
    claims = TicketClaims(
        aud=UNIT, sub="s", name="n", role="r", purpose="night_check", cid="c",
        iat=0, nbf=0, exp=1, win=(0, 1), maxd=60, fp="sha-256 AA",
    )  # fmt: skip
    with pytest.raises(BadBundle, match=r"^not a config bundle$"):
        verify_bundle(sign_ticket(claims, config_key), config_key, UNIT)


def test_schema_problems_are_listed(config_key: OKPKey, ticket_key: OKPKey) -> None:
    claims = bundle(ticket_key).model_dump(mode="json")
    claims.update(version=0, language="fi", shell="rm -rf /", ice_servers=[{"urls": ["http://x"]}])
    token = jwt.encode(
        {"alg": "Ed25519", "typ": "vaka-config+jwt"}, claims, config_key, algorithms=["Ed25519"]
    )
    with pytest.raises(BadBundle) as err:
        verify_bundle(token, config_key, UNIT)
    message = str(err.value)
    assert message.startswith("config bundle is invalid: ")
    for problem in (
        "version: Input should be greater than or equal to 1",
        "language: Input should be 'sv', 'da' or 'en'",
        "shell: Extra inputs are not permitted",
        "ice_servers.0.urls: Value error, 'http://x' is not a stun:, turn: or turns: URL",
    ):
        assert problem in message


def test_build_bundle_refuses_a_private_ticket_key(ticket_key: OKPKey) -> None:
    private_pem = ticket_key.as_pem(private=True).decode()
    with pytest.raises(BadBundle, match="ticket_key: Value error, a private key"):
        build_bundle(UNIT, 1, "nightcam", private_pem)


def test_load_config_key_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config key .*: No such file"):
        load_config_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ConfigError, match="is not an Ed25519 key"):
        load_config_key(tmp_path / "junk.pem")


# ---------------------------------------------------------------- the unit's store


def test_store_keeps_the_last_good_bundle(
    tmp_path: Path, config_key: OKPKey, ticket_key: OKPKey
) -> None:
    public = OKPKey.import_key(config_key.as_pem(private=False))
    store = ConfigStore(tmp_path / "creds", public, UNIT, profile="nightcam")
    seen: list[int] = []
    store.subscribe(lambda b: seen.append(b.version))
    assert (store.version, store.active) == (0, None)

    good = sign_bundle(bundle(ticket_key, 2), config_key)
    assert store.apply(good, announced_version=2).version == 2
    path = tmp_path / "creds" / CONFIG_FILE
    assert path.read_text() == good
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.apply(good).version == 2  # the retained bundle again: nothing happens
    assert seen == [2]

    refusals = {
        sign_bundle(bundle(ticket_key, 3), new_ticket_key()): "bad signature",
        sign_bundle(bundle(ticket_key, 1), config_key): "config version 1 is not newer",
        sign_bundle(build_bundle(UNIT, 4, "tv", ticket_key), config_key): (
            "config is for a tv unit; this unit runs the nightcam profile"
        ),
    }
    for token, reason in refusals.items():
        with pytest.raises(BadBundle, match=reason):
            store.apply(token)
    with pytest.raises(BadBundle, match="config message says version 9 but the signed bundle"):
        store.apply(sign_bundle(bundle(ticket_key, 5), config_key), announced_version=9)
    assert (store.version, path.read_text(), seen) == (2, good, [2])
    assert sorted(p.name for p in path.parent.iterdir()) == [CONFIG_FILE]  # no temp file left

    assert ConfigStore(tmp_path / "creds", public, UNIT).version == 2  # after a restart


def test_store_ignores_a_corrupt_or_foreign_file(
    tmp_path: Path, config_key: OKPKey, ticket_key: OKPKey, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_text("garbage")
    store = ConfigStore(tmp_path, config_key, UNIT)
    assert store.version == 0
    assert store.load_problem is not None and "unreadable config" in store.load_problem
    assert "ignored: unreadable config" in caplog.text

    path.write_text(sign_bundle(bundle(ticket_key, unit=OTHER), config_key))
    store = ConfigStore(tmp_path, config_key, UNIT)
    assert store.load_problem == (
        f"stored config {path} ignored: config is for unit {OTHER}, not this unit ({UNIT})"
    )
    assert store.apply(sign_bundle(bundle(ticket_key, 1), config_key)).version == 1


def test_store_without_a_key_refuses_everything(ticket_key: OKPKey, config_key: OKPKey) -> None:
    store = ConfigStore(None, None, UNIT)
    with pytest.raises(BadBundle, match=r"no pinned config key \(\[trust\] config_key\)"):
        store.apply(sign_bundle(bundle(ticket_key), config_key))
    assert store.version == 0


# ---------------------------------------------------------------- over the broker


def unit_config(broker: Broker, credentials: Path | None = None) -> dict[str, Any]:
    """The in-process agent's configuration, pinning the test PKI's config key."""
    data = agent_config(broker, UNIT)
    data["trust"] = {"config_key": str(broker.pki.config_keys()[1])}
    if credentials is not None:
        data["storage"] = {"credentials_dir": str(credentials)}
    return data


def unit_events(received: list[aiomqtt.Message]) -> list[dict[str, Any]]:
    """Kind and detail of each event the unit published so far."""
    events = []
    for raw in received:
        message = decode(raw.payload if isinstance(raw.payload, bytes) else b"")
        if isinstance(message, EventMessage):
            events.append({"kind": message.payload.kind, **message.payload.detail})
    return events


def central_key(broker: Broker) -> OKPKey:
    return load_config_key(broker.pki.config_keys()[0])


async def test_unit_applies_good_bundles_and_refuses_bad_ones(
    broker: Broker, central: CentralService, ticket_key: OKPKey
) -> None:
    key = central_key(broker)
    async with (
        broker.client("central-2") as observer,
        collecting(observer, device_topic(UNIT, Channel.EVENTS)) as received,
        running_agent(unit_config(broker)) as agent,
    ):
        await push_config(central, UNIT, bundle(ticket_key, 1, health_interval_s=7), key)
        await wait_for(lambda: agent.config_store.version == 1, 5, what="version 1 applied")
        await wait_for(
            lambda: {"kind": "info", "config": "applied", "version": 1} in unit_events(received),
            5,
            what="applied event",
        )
        assert (agent.sampler.interval_s, agent.reporter.interval_s) == (7, 7)
        assert agent.calls is not None
        assert agent.calls.guard.ticket_key.as_pem() == ticket_key.as_pem(private=False)

        wrong = bundle(ticket_key, 2, health_interval_s=99)
        other = bundle(ticket_key, 3, unit=OTHER, health_interval_s=99)
        older = bundle(ticket_key, 1, health_interval_s=99)
        await push_config(central, UNIT, wrong, new_ticket_key())
        await central.link.publish_to_unit(
            UNIT, Channel.CONFIG, config_message(other, key), retain=True
        )
        await push_config(central, UNIT, older, key)
        expected = [
            "bad signature (version 1 stays active)",
            f"config is for unit {OTHER}, not this unit ({UNIT}) (version 1 stays active)",
            "config version 1 is not newer than the active version 1 (version 1 stays active)",
        ]

        def refusals() -> list[str]:
            return [
                e["reason"]
                for e in unit_events(received)
                if e["kind"] == "refused" and e["topic"] == "config"
            ]

        await wait_for(lambda: len(refusals()) >= 3, 5, what="three refusals")
        assert refusals() == expected
        assert agent.config_store.version == 1
        assert agent.sampler.interval_s == 7
        assert agent.sampler.sample().config_version == 1
        assert agent.link.refusals.by_category["config bundle"] == 3
    pushed = [
        e for e in await asyncio.to_thread(central.audit.entries) if e.kind == "config_pushed"
    ]
    assert [e.detail["version"] for e in pushed] == [1, 2, 1]


async def test_retained_bundle_reaches_a_unit_that_connects_later(
    broker: Broker, central: CentralService, ticket_key: OKPKey
) -> None:
    key = central_key(broker)
    await push_config(central, UNIT, bundle(ticket_key, 4), key)  # the unit is not running
    async with running_agent(unit_config(broker)) as agent:
        await wait_for(lambda: agent.config_store.version == 4, 5, what="retained bundle")
    await push_config(central, UNIT, bundle(ticket_key, 5), key)  # offline again
    async with running_agent(unit_config(broker)) as agent:
        await wait_for(lambda: agent.config_store.version == 5, 5, what="bundle on reconnect")


async def test_stored_bundle_survives_a_restart(
    broker: Broker, central: CentralService, ticket_key: OKPKey, tmp_path: Path
) -> None:
    key = central_key(broker)
    credentials = tmp_path / "credentials"
    async with running_agent(unit_config(broker, credentials)) as agent:
        await push_config(central, UNIT, bundle(ticket_key, 1, health_interval_s=9), key)
        await wait_for(lambda: agent.config_store.version == 1, 5, what="version 1 applied")
    stored = credentials / CONFIG_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600

    # Central's retained copy is gone: what the unit runs now can only come from its own disk.
    async with broker.client("central-2") as admin:
        await admin.publish(device_topic(UNIT, Channel.CONFIG), b"", qos=1, retain=True)
    restarted = Agent(parse_config(unit_config(broker, credentials)))
    assert restarted.config_store.version == 1
    assert restarted.sampler.interval_s == 9
    restarted.hardware.close()

    async with running_agent(unit_config(broker, credentials)) as agent:
        assert agent.config_store.version == 1
        await push_config(central, UNIT, bundle(ticket_key, 2), key)
        await wait_for(lambda: agent.config_store.version == 2, 5, what="version 2 applied")
    assert ConfigStore(credentials, key, UNIT).version == 2

    # Stored and retained are the same bundle: taken silently, neither re-applied nor refused.
    async with (
        broker.client("central-2") as observer,
        collecting(observer, device_topic(UNIT, Channel.EVENTS)) as received,
        running_agent(unit_config(broker, credentials)) as agent,
    ):
        await asyncio.sleep(0.5)
        assert agent.config_store.version == 2
        assert agent.link.refusals.total == 0
        assert [
            e for e in unit_events(received) if "config" in (e.get("topic"), e.get("config"))
        ] == []
