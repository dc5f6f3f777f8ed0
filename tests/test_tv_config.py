"""Technicians set a TV's auto-answer rules and language through central; bad rules are refused
with the reason."""

import argparse
import asyncio
from pathlib import Path

import pytest

from tests.test_enrolment import technician
from tests.tvunit import TV, running_tv, tv_directory
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.provisioning.technician import auto_answer_rule, ice_servers_file

RULE = {"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 7}


async def test_auto_answer_rules_reach_the_tv(broker: Broker, central: CentralService) -> None:
    http = await technician(central)
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with http, running_tv(broker) as agent:
        path = f"/api/units/{TV}/config"
        turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "s3cret"}
        body = {"profile": "tv", "language": "da", "auto_answer": [RULE], "ice_servers": [turn]}
        async with http.post(path, json=body) as resp:
            assert resp.status == 200, await resp.text()
        # The store activates the bundle, then its listeners put the values in (the language).
        await wait_for(
            lambda: (
                agent.config_store.active is not None
                and agent.tv is not None
                and agent.tv.catalog.language == "da"
            ),
            10,
        )
        bundle = agent.config_store.active
        assert bundle is not None and bundle.language == "da"
        assert [r.model_dump() for r in bundle.auto_answer] == [RULE]
        assert agent.tv is not None and agent.tv.catalog.language == "da"
        assert bundle.ice_servers[0].urls == turn["urls"]

        bad = [
            ({"profile": "nightcam", "auto_answer": [RULE]}, "apply to tv units only"),
            (
                {"profile": "tv", "auto_answer": [{**RULE, "caller_groups": ["g-nowhere"]}]},
                "unknown group g-nowhere",
            ),
            ({"profile": "tv", "auto_answer": [{**RULE, "countdown_s": 999}]}, "countdown_s"),
            ({"profile": "tv", "ice_servers": [{"urls": ["http://x.example"]}]}, "stun:"),
        ]
        for body, reason in bad:
            async with http.post(path, json=body) as resp:
                assert resp.status == 400 and reason in await resp.text()


def test_the_cli_reads_ice_servers_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ice.json"
    path.write_text('[{"urls": ["stun:stun.example.org"]}]')
    assert ice_servers_file(str(path)) == [{"urls": ["stun:stun.example.org"]}]
    path.write_text('{"urls": []}')
    with pytest.raises(argparse.ArgumentTypeError, match="JSON list"):
        ice_servers_file(str(path))
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read"):
        ice_servers_file(str(tmp_path / "missing.json"))


def test_the_cli_reads_a_rule() -> None:
    assert auto_answer_rule("video_visit:g-a, g-b:10") == {
        "purpose": "video_visit",
        "caller_groups": ["g-a", "g-b"],
        "countdown_s": 10,
    }
    with pytest.raises(argparse.ArgumentTypeError, match="expected PURPOSE"):
        auto_answer_rule("video_visit:10")
