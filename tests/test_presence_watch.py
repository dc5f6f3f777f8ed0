"""The pieces of the viewer's presence and of the one-run ticket, in memory (the stack tests are
tests/test_shutter_presence.py and tests/test_call_replay.py)."""

import asyncio
import time

import pytest

from tests.nightcheck import UNIT, make_offer
from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.presence import MediaDeadlines, PresenceWatch
from vaka.provisioning.tickets import TicketClaims, new_ticket_key, sign_ticket
from vaka.rtc import presence


class FakeChannel:
    """A data channel that records what the unit sends."""

    def __init__(self, label: str = presence.LABEL) -> None:
        self.label = label
        self.readyState = "open"
        self.sent: list[str] = []
        self.handlers: dict[str, object] = {}

    def on(self, event: str, handler: object) -> None:
        self.handlers[event] = handler

    def send(self, data: str) -> None:
        self.sent.append(data)

    def deliver(self, message: object) -> None:
        handler = self.handlers["message"]
        assert callable(handler)
        handler(message)


def test_the_staff_side_answers_only_pings() -> None:
    channel = FakeChannel()
    assert presence.answer(channel, "ping 0a1b")
    assert channel.sent == ["pong 0a1b"]
    for other in ("pong 0a1b", "ping", "ping XYZ", b"ping 00", "ping " + "0" * 33):
        assert not presence.answer(channel, other)
    assert channel.sent == ["pong 0a1b"]


async def test_an_answer_must_echo_a_ping_the_unit_sent() -> None:
    watch = PresenceWatch(MediaDeadlines(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.3))
    channel = FakeChannel()
    assert not watch.adopt(FakeChannel("something-else"))
    assert watch.adopt(channel)
    assert not watch.adopt(FakeChannel())  # one presence channel per call
    assert len(channel.sent) == 1  # the first ping at once
    channel.deliver("pong 00112233")  # a token the unit never sent
    assert not watch.heard.is_set() and watch.ignored == 1
    token = channel.sent[0].split()[1]
    channel.deliver(f"pong {token}")
    assert watch.heard.is_set() and watch.rtt_ms is not None
    channel.deliver(f"pong {token}")  # each token counts once
    assert watch.ignored == 2


async def test_a_silent_viewer_ends_the_call_after_the_timeout() -> None:
    deadlines = MediaDeadlines(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.3)
    watch = PresenceWatch(deadlines)
    channel = FakeChannel()
    watch.adopt(channel)
    reasons: list[str] = []
    ended_at: list[float] = []

    async def end(reason: str) -> None:
        reasons.append(reason)
        ended_at.append(time.monotonic())

    async def viewer(until: float) -> None:
        answered = 0
        while time.monotonic() < until:
            for ping in channel.sent[answered:]:
                channel.deliver(ping.replace("ping", "pong"))
            answered = len(channel.sent)
            await asyncio.sleep(0.01)

    started = time.monotonic()
    answering = asyncio.create_task(viewer(started + 0.6))
    await asyncio.wait_for(watch.run(end, "c-1"), 5)
    took = time.monotonic() - started
    await answering
    assert reasons == ["viewer silent: no heartbeat on the call's data channel for 0.3 s"]
    assert watch.last_heard is not None and watch.last_heard >= started + 0.4  # it was answered
    assert ended_at[0] - watch.last_heard >= 0.3  # not before the timeout after the last answer
    assert took <= 3.0


def test_deadlines_are_checked() -> None:
    with pytest.raises(ValueError, match="below its timeout"):
        MediaDeadlines(heartbeat_interval_s=3, heartbeat_timeout_s=2)


def _claims(fp: str, iat: int) -> TicketClaims:
    return TicketClaims(
        aud=UNIT,
        sub="s-nurse",
        name="Nina Night",
        role="night_staff",
        purpose="night_check",
        cid="c-1",
        iat=iat,
        nbf=iat,
        exp=iat + 600,
        win=(iat - 60, iat + 600),
        maxd=60,
        fp=fp,
    )


async def test_a_ticket_from_before_the_agent_started_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_ticket_key()
    pc, sdp, fp = await make_offer()
    await pc.close()
    now = int(time.time())
    guard = OfferGuard(UNIT, "nightcam", key, 600)
    with pytest.raises(OfferRefused, match=r"ticket issued 5 s before this unit's agent started"):
        guard.check("c-1", sign_ticket(_claims(fp, now - 5), key), sdp)
    # NTP steps the clock an hour forward after boot: the start moves with it, not the tickets.
    stepped = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: stepped)
    with pytest.raises(OfferRefused, match="before this unit's agent started"):
        guard.check("c-1", sign_ticket(_claims(fp, now + 3595), key), sdp)
    assert guard.check("c-1", sign_ticket(_claims(fp, int(stepped)), key), sdp).cid == "c-1"


async def test_between_two_units_each_answers_pings_and_the_caller_counts_the_others() -> None:
    deadlines = MediaDeadlines(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.3)
    # The unit that answers (as for every call) answers the other unit's pings too, but only
    # its own pings answered prove the other side is there.
    callee, channel = PresenceWatch(deadlines), FakeChannel()
    callee.adopt(channel)
    channel.deliver("ping 0a0b")
    assert channel.sent[-1] == "pong 0a0b" and not callee.heard.is_set()
    # The unit that placed the call counts the other's pings: a unit that only answers pings
    # proves itself by its own.
    caller, channel = PresenceWatch(deadlines), FakeChannel()
    caller.peer_pings = True
    caller.adopt(channel)
    channel.deliver("ping 0c0d")
    assert channel.sent[-1] == "pong 0c0d" and caller.heard.is_set()
    assert caller.last_heard is not None and caller.rtt_ms is None
    # ... and goes silent like any viewer once the pings stop.
    reasons: list[str] = []

    async def end(reason: str) -> None:
        reasons.append(reason)

    await asyncio.wait_for(caller.run(end, "c-2"), 5)
    assert reasons == ["viewer silent: no heartbeat on the call's data channel for 0.3 s"]


async def test_the_ticket_that_asks_a_unit_for_an_offer() -> None:
    key = new_ticket_key()
    now = int(time.time())
    ask = TicketClaims(
        **{**_claims("", now).model_dump(), "purpose": "contact_call", "req": "u-tv.0123456789ab"}
    )
    guard = OfferGuard(UNIT, "tv", key, 600)
    assert guard.check_call_request("c-1", sign_ticket(ask, key)).req == "u-tv.0123456789ab"
    with pytest.raises(OfferRefused, match=r"ticket already used \(replayed nonce\)"):
        guard.check_call_request("c-1", sign_ticket(ask, key))
    fresh = ask.model_copy(update={"jti": "n-2"})
    with pytest.raises(OfferRefused, match="ticket is for another call"):
        guard.check_call_request("c-9", sign_ticket(fresh, key))
    no_request = ask.model_copy(update={"jti": "n-3", "req": None})
    with pytest.raises(OfferRefused, match="ticket names no call request of the citizen"):
        guard.check_call_request("c-1", sign_ticket(no_request, key))
    # A night camera never places a call, nor takes a contact's.
    nightcam = OfferGuard(UNIT, "nightcam", key, 600)
    with pytest.raises(OfferRefused, match="contact_call calls are not allowed on a nightcam unit"):
        nightcam.check_call_request("c-1", sign_ticket(ask.model_copy(update={"jti": "n-4"}), key))
    # The ask names no fingerprint, so it can never pass as an offer's ticket.
    pc, sdp, _fp = await make_offer()
    await pc.close()
    with pytest.raises(OfferRefused, match="DTLS fingerprint in the offer does not match"):
        guard.check("c-1", sign_ticket(ask.model_copy(update={"jti": "n-5"}), key), sdp)
