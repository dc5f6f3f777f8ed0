"""The unit's count of broker link outages and the length of the last one (its health)."""

from vaka.agent.health import HealthSampler
from vaka.agent.link.outages import LinkOutages
from vaka.agent.link.settings import LinkState


def test_an_outage_is_counted_when_the_link_is_back() -> None:
    now = [100.0]
    outages = LinkOutages(clock=lambda: now[0])
    outages.on_state(LinkState.CONNECTING)  # the first connection is no outage
    outages.on_state(LinkState.ONLINE)
    assert outages.snapshot() == (0, None)
    now[0] = 110.0
    outages.on_state(LinkState.WAITING)
    now[0] = 112.0
    outages.on_state(LinkState.CONNECTING)  # retries do not restart the outage
    outages.on_state(LinkState.WAITING)
    assert outages.snapshot() == (0, None)  # still down: not ended yet
    now[0] = 131.25
    outages.on_state(LinkState.ONLINE)
    assert outages.snapshot() == (1, 21.2)
    now[0] = 140.0
    outages.on_state(LinkState.WAITING)
    now[0] = 142.0
    outages.on_state(LinkState.ONLINE)
    assert outages.snapshot() == (2, 2.0)


def test_health_carries_the_outages() -> None:
    sample = HealthSampler(link_outages=lambda: (3, 20.5), clock_synced=lambda: True).sample()
    assert (sample.link_outages, sample.last_outage_s) == (3, 20.5)
    quiet = HealthSampler(clock_synced=lambda: True).sample()
    assert (quiet.link_outages, quiet.last_outage_s) == (0, None)
