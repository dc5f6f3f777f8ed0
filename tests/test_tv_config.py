"""Technicians set a TV's auto-answer rules and language through central; bad rules are refused
with the reason."""

import argparse
import asyncio

import pytest

from tests.conftest import Broker, wait_for
from tests.test_enrolment import technician
from tests.tvunit import TV, running_tv, tv_directory
from vaka.central.service import CentralService
from vaka.provisioning.technician import auto_answer_rule

RULE = {"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 7}


async def test_auto_answer_rules_reach_the_tv(broker: Broker, central: CentralService) -> None:
    http = await technician(central)
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with http, running_tv(broker) as agent:
        path = f"/api/units/{TV}/config"
        body = {"profile": "tv", "language": "da", "auto_answer": [RULE]}
        async with http.post(path, json=body) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: agent.config_store.active is not None, 10)
        bundle = agent.config_store.active
        assert bundle is not None and bundle.language == "da"
        assert [r.model_dump() for r in bundle.auto_answer] == [RULE]
        assert agent.tv is not None and agent.tv.catalog.language == "da"

        bad = [
            ({"profile": "nightcam", "auto_answer": [RULE]}, "apply to tv units only"),
            (
                {"profile": "tv", "auto_answer": [{**RULE, "caller_groups": ["g-nowhere"]}]},
                "unknown group g-nowhere",
            ),
            ({"profile": "tv", "auto_answer": [{**RULE, "countdown_s": 999}]}, "countdown_s"),
        ]
        for body, reason in bad:
            async with http.post(path, json=body) as resp:
                assert resp.status == 400 and reason in await resp.text()


def test_the_cli_reads_a_rule() -> None:
    assert auto_answer_rule("video_visit:g-a, g-b:10") == {
        "purpose": "video_visit",
        "caller_groups": ["g-a", "g-b"],
        "countdown_s": 10,
    }
    with pytest.raises(argparse.ArgumentTypeError, match="expected PURPOSE"):
        auto_answer_rule("video_visit:10")
