"""Where a unit may download a bundle from: its firewall (the site's nftables ``BUNDLE_*``
lines, and the agent's ``IPAddressAllow=``) lets it reach the broker, the TURN relays and the
update bundle server only. The agent knows the bundle server from ``[update] servers``
(``host:port``): an order whose URL names another host or port is refused at once, with the
reason, before any download (the firewall would drop it and the download would only time out).
Loopback stays allowed (a unit's own tests, the simulated stack)."""

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.test_updates import (
    bundle_spec,
    central,  # noqa: F401 (fixture)
    daytime,
    installer,
    update_section,
    wait_for_audit,
)
from vaka.agent.config import UpdateSection
from vaka.agent.download import unreachable_server
from vaka.central.service import CentralService
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack

SERVERS = ("bundles.example.org:443", "[2001:db8::20]:8443")


@pytest.mark.parametrize(
    "url",
    [
        "https://bundles.example.org/vaka-2.raucb",  # 443 by default for https
        "https://BUNDLES.example.org:443/vaka-2.raucb",
        "https://[2001:db8::20]:8443/b",
        "http://127.0.0.1:8080/api/unit/bundles/x",  # loopback: always
        "https://localhost:9999/b",
    ],
)
def test_an_order_for_a_server_the_unit_may_reach_passes(url: str) -> None:
    assert unreachable_server(url, SERVERS) is None


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://bundles.example.org:8443/vaka-2.raucb", "bundles.example.org:8443"),
        ("https://other.example.org/vaka-2.raucb", "other.example.org:443"),
        ("https://[2001:db8::20]/b", "[2001:db8::20]:443"),
        ("http://bundles.example.org/b", "bundles.example.org:80"),
    ],
)
def test_an_order_for_another_server_or_port_is_refused_with_the_reason(
    url: str, named: str
) -> None:
    reason = unreachable_server(url, SERVERS)
    assert reason is not None
    assert f"the bundle server {named} is not one this unit may reach" in reason
    assert "bundles.example.org:443" in reason and "[update] servers" in reason
    # A unit that names no bundle server reaches none but loopback.
    assert "no bundle server" in str(unreachable_server(url, ()))


def test_servers_must_be_host_and_port() -> None:
    assert UpdateSection(servers=["bundles.example.org:443"]).servers == ["bundles.example.org:443"]
    for bad in ("bundles.example.org", ":443", "host:0", "host:https", "host:70000"):
        with pytest.raises(ValidationError, match="is not host:port"):
            UpdateSection(servers=[bad])


async def test_a_unit_refuses_an_order_for_a_server_its_firewall_does_not_let_it_reach(
    stack: LocalStack,
    central: CentralService,  # noqa: F811
    tmp_path: Path,
) -> None:
    unit = "u-upd-server"
    section = update_section(tmp_path, unit, servers=["bundles.example.org:443"])
    async with stack.running_unit(unit, update=section) as agent:
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        url = "https://bundles.example.org:8443/vaka-2.raucb"
        made = await central.rollouts.create(
            "t-tech", bundle_spec("2.0", "b" * 64, 1000, url), [unit], 100
        )
        detail = await wait_for_audit(central, unit, "update_refused")
        reason = str(detail["reason"])
        assert "the bundle server bundles.example.org:8443 is not one this unit may reach" in reason
        status = await asyncio.to_thread(central.rollouts.status, made["rollout_id"])
        assert status["units"][0]["state"] == "refused"
        # Refused before any download: no directory made, nothing handed to the installer.
        assert not (tmp_path / f"dl-{unit}").exists()
        assert installer(agent).installed == []
        entries = await asyncio.to_thread(central.audit.entries, kind="update_downloaded")
        assert [e for e in entries if e.unit == unit] == []
