"""The contact's page in real Chromium against the real stack and a simulated TV unit: a
relative invited in person redeems the code from the QR link, creates a passkey with Chromium's
virtual authenticator (DevTools ``WebAuthn`` domain), calls the TV — pictures and sound both
ways — and logs in again with the passkey; at phone size (the citizen answers) and on a desktop
(a contact whom staff set to be answered by itself). Refusals are shown
with their reasons: declined on the TV, removed mid-call (the call ends), revoked log-in. The TV
rings with the contact's name and picture, and the citizen's "Not this evening" refuses
contacts' calls (not staff visits) until the morning, as the page says in the contact's
language."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from playwright.async_api import Page, expect

from tests.circle import StaffApi
from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.test_console_duty import pattern_moves_on, received_frames, video_plays
from tests.tvunit import CITIZEN, DAY, TV, push_tv_config, running_tv, screen_of, tv_directory
from vaka.agent.media.audio import AudioSink
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming
from vaka.agent.ui.layout import buttons, render
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.staff.client import StaffClient, StaffError

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(150)

#: ``VAKA_SCREENS=docs/screens`` keeps the page's screenshots for the docs
SCREENS = os.environ.get("VAKA_SCREENS")


async def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot of the page (into ``$VAKA_SCREENS`` too, when set)."""
    await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if SCREENS:
        await page.screenshot(path=str(Path(SCREENS) / f"{name}.png"), full_page=True)


async def virtual_passkeys(page: Page) -> None:
    """Chromium's virtual platform authenticator, with resident keys and a verified user."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def local_url(central: CentralService) -> str:
    """Central by name: a passkey's relying party is a domain, never an IP address."""
    return central.url.replace("127.0.0.1", "localhost")


async def hears_sound(page: Page, selector: str) -> bool:
    """Whether the ``<video>``'s remote stream carries sound (a Web Audio analyser's level)."""
    return bool(
        await page.evaluate(
            """async (selector) => {
                const stream = document.querySelector(selector).srcObject;
                if (!stream || !stream.getAudioTracks().length) return false;
                const context = new AudioContext();
                const analyser = context.createAnalyser();
                context.createMediaStreamSource(stream).connect(analyser);
                const data = new Float32Array(analyser.fftSize);
                for (let i = 0; i < 40; i++) {
                    await new Promise((r) => setTimeout(r, 50));
                    analyser.getFloatTimeDomainData(data);
                    if (data.some((v) => Math.abs(v) > 0.01)) { context.close(); return true; }
                }
                context.close();
                return false;
            }""",
            selector,
        )
    )


async def invited(central: CentralService, **rules: Any) -> tuple[StaffApi, str, str]:
    """The day nurse adds Anna to the citizen's circle and invites her: (staff, contact, code)."""
    await asyncio.to_thread(central.directory.load, tv_directory())
    staff = await StaffApi.log_in(central.url, DAY)
    contact = str((await staff.add_contact(CITIZEN, **rules))["id"])
    code = str((await staff.invite(contact))["code"])
    return staff, contact, code


@pytest.fixture
async def central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central whose TV answers an auto-answered contact after 3 s (10 s by default)."""
    config = stack.central_config()
    calls = config.calls.model_copy(update={"contact_auto_answer_s": 3})
    async with running_central(config.model_copy(update={"calls": calls})) as service:
        yield service


# At phone size the citizen answers; on the desktop the contact is one whom staff set to be
# answered by itself.
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_an_invited_relative_sets_a_passkey_and_calls_the_tv_two_way(
    broker: Broker, central: CentralService, browser: Any, tmp_path: Path, viewport: str
) -> None:
    auto = viewport == "desktop"
    _staff, contact, code = await invited(central, auto_answer=auto)
    page = await new_page(browser, viewport)
    await virtual_passkeys(page)
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent)
        # The QR code's link: the code arrives in the fragment and leaves the address bar.
        await page.goto(f"{local_url(central)}/contact#code={code}")
        await expect(page.locator("#code")).to_have_value(code)
        assert "#" not in page.url
        await shot(page, tmp_path, f"contact-welcome-{viewport}")
        await page.click("#code-form button[type=submit]")
        await expect(page.locator("#enrol h1")).to_have_text("How do you want to log in next time?")
        await shot(page, tmp_path, f"contact-enrol-{viewport}")
        await page.click("#make-passkey")
        await expect(page.locator("#call")).to_have_text("Call Grandma Greta")
        await expect(page.locator("#hours")).to_have_text("You can call between 00:00-24:00.")
        await shot(page, tmp_path, f"contact-home-{viewport}")

        await page.click("#call")
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 15, what="ringing")
        ringing = screen_of(agent).state
        assert isinstance(ringing, Incoming)
        assert (ringing.caller_name, ringing.caller_role) == ("Anna Andersson", "contact")
        if auto:
            assert ringing.countdown_s == 3
        else:
            assert ringing.countdown_s is None  # a contact's call only rings by default
            screen_of(agent).press(ButtonId.ANSWER)
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15, what="answered")
        # Pictures both ways: the TV's moving pattern on the phone, the phone's camera at the TV.
        await video_plays(page, "#remote")
        await pattern_moves_on(page, "#remote")
        await wait_for(lambda: received_frames(agent) > 5, 10, what="the phone's frames at the TV")
        # Sound both ways: the phone hears the TV's tone, the TV plays the phone's microphone.
        assert await hears_sound(page, "#remote")
        assert agent.tv is not None
        speaker = agent.tv.call_media.speaker
        assert isinstance(speaker, AudioSink)
        await wait_for(lambda: speaker.frames > 50, 10, what="the phone's sound at the TV")
        await expect(page.locator("#hangup")).to_have_text("Hang up")
        await shot(page, tmp_path, f"contact-call-{viewport}")
        await page.click("#hangup")
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
        await expect(page.locator("#refusal")).to_have_text("The call has ended.")

        # Another day: logged out, in again with the passkey alone.
        await page.click("#logout")
        await expect(page.locator("#welcome")).to_be_visible()
        await expect(page.locator("#home")).to_be_hidden()
        await page.click("#passkey-login")
        await expect(page.locator("#home")).to_be_visible()
        await expect(page.locator("#greeting")).to_have_text("Hello Anna Andersson")
    issued = await asyncio.to_thread(central.audit.entries, kind="ticket_issued")
    assert [(e.actor, e.unit, e.purpose) for e in issued] == [(contact, TV, "contact_call")]
    kinds = {e.kind for e in await asyncio.to_thread(central.audit.entries)}
    assert {"invitation_redeemed", "contact_credential_set", "contact_login"} <= kinds
    assert page_errors(page) == []


async def _password_contact(page: Page, central: CentralService, code: str) -> None:
    await page.goto(f"{local_url(central)}/contact#code={code}")
    await page.click("#code-form button[type=submit]")
    await page.click("#enrol summary")
    await page.fill("#new-password", "a long family password")
    await page.click("#password-form button[type=submit]")
    # The home screen, once central has set the password and the full session (the call button
    # is disabled until then: waiting for "enabled" alone raced the password request).
    await expect(page.locator("#home")).to_be_visible()
    await expect(page.locator("#call")).to_be_enabled()


async def test_refusals_are_shown_with_their_reasons(
    broker: Broker, central: CentralService, browser: Any, tmp_path: Path
) -> None:
    staff, contact, code = await invited(central)
    page = await new_page(browser, "phone")
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent)
        # An invitation used twice.
        await _password_contact(page, central, code)
        other = await new_page(browser, "phone")
        await other.goto(f"{local_url(central)}/contact#code={code}")
        await other.click("#code-form button[type=submit]")
        await expect(other.locator("#error")).to_have_text(
            "That invitation has already been used. Ask the care staff for a new one."
        )
        await shot(other, tmp_path, "contact-refused-invitation-phone")
        # The same in Swedish, and the choice is kept for the next visit.
        await other.select_option("#language", "sv")
        await expect(other.locator("#code-form button[type=submit]")).to_have_text("Fortsätt")
        await other.click("#code-form button[type=submit]")
        await expect(other.locator("#error")).to_have_text(
            "Inbjudan har redan använts. Be vårdpersonalen om en ny."
        )
        await other.reload()
        await expect(other.locator("#welcome h1")).to_have_text("Välkommen")
        await shot(other, tmp_path, "contact-refused-invitation-phone-sv")

        # Declined on the TV.
        await page.click("#call")
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 15)
        screen_of(agent).press(ButtonId.DECLINE)
        await expect(page.locator("#refusal")).to_have_text(
            "Grandma Greta did not take the call just now."
        )
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)

        # Removed by staff in the middle of a call: the call ends, and the page says why.
        await page.click("#call")
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 15)
        screen_of(agent).press(ButtonId.ANSWER)
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15)
        await video_plays(page, "#remote")
        status, body = await staff.request("DELETE", f"/api/contacts/{contact}")
        assert status == 200 and body["call_ended"] is not None
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10, what="call ended")
        await expect(page.locator("#gone-text")).to_have_text(
            "You are no longer one of this person's contacts."
        )
        await shot(page, tmp_path, "contact-removed-phone")
    # A revoked log-in: the page asks to log in again and says why.
    _staff, second, code = await invited(central)
    revoked = await new_page(browser, "phone")
    await _password_contact(revoked, central, code)
    status, body = await staff.request("POST", f"/api/contacts/{second}/revoke")
    assert status == 200 and body["sessions_ended"] >= 1, (status, body)
    await revoked.click("#call")
    await expect(revoked.locator("#error")).to_have_text(
        "Your log-in has ended or was revoked. Log in again, or ask the care staff for a new "
        "invitation."
    )
    await expect(revoked.locator("#welcome")).to_be_visible()
    removed = await asyncio.to_thread(central.audit.entries, kind="contact_removed")
    assert removed[0].call_id is not None
    assert page_errors(page) == [] and page_errors(revoked) == []


def _picture_shown(agent: Any) -> Any:
    state = screen_of(agent).state
    return state.picture if isinstance(state, Incoming) else None


async def shot_tv(agent: Any, tmp_path: Path, name: str) -> None:
    """The TV's screen as the citizen sees it (kept for the docs with ``VAKA_SCREENS``)."""
    state = screen_of(agent).state
    assert state is not None
    image = render(state, agent.tv.catalog)
    folder = Path(SCREENS) if SCREENS else tmp_path
    await asyncio.to_thread(cv2.imwrite, str(folder / f"{name}.png"), image)


def _rings(agent: Any) -> int:
    """How many times the TV has shown an incoming call so far."""
    history = [state for _, state in screen_of(agent).history]
    return sum(
        1
        for before, now in zip([None, *history], history, strict=False)
        if isinstance(now, Incoming) and not isinstance(before, Incoming)
    )


async def test_the_tv_rings_with_the_contact_and_do_not_disturb_refuses_only_contacts(
    broker: Broker, central: CentralService, browser: Any, tmp_path: Path
) -> None:
    _staff, _contact, code = await invited(central)
    page = await new_page(browser, "phone")
    async with running_tv(broker) as agent, StaffClient(central.url) as nurse:
        await push_tv_config(central, agent)
        tv = agent.tv
        assert tv is not None
        await _password_contact(page, central, code)

        # The contact's call rings with their name and picture, and offers "Not this evening".
        await page.click("#call")
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 15)
        # The picture staff stored (an orange square), as central's signed thumbnail.
        await wait_for(lambda: _picture_shown(agent) is not None, 10, what="the caller's picture")
        picture = _picture_shown(agent)
        assert picture is not None and picture.shape == (240, 240, 3)
        assert [round(float(c)) for c in picture.reshape(-1, 3).mean(axis=0)] == pytest.approx(
            [40, 120, 200], abs=6
        )
        state = screen_of(agent).state
        assert isinstance(state, Incoming) and state.contact
        assert state.caller_name == "Anna Andersson"
        await shot_tv(agent, tmp_path, "tv-contact-ringing")
        targets = {b.id for b in buttons(state)}
        assert targets == {ButtonId.ANSWER, ButtonId.DECLINE, ButtonId.DO_NOT_DISTURB}
        screen_of(agent).press(ButtonId.DO_NOT_DISTURB)
        await expect(page.locator("#refusal")).to_have_text(
            "Grandma Greta does not want calls this evening. Try again tomorrow."
        )
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
        # Until 07:00 in the morning, the unit's local time.
        until = tv.quiet.until
        assert until is not None and 0 < until - tv.clock() <= 24 * 3600
        assert tv.staff_hours().local(until).strftime("%H:%M") == "07:00"

        # Another call from the contact: refused at once, the TV does not ring; in Danish.
        rung = _rings(agent)
        await page.select_option("#language", "da")
        await page.click("#call")
        await expect(page.locator("#refusal")).to_have_text(
            "Grandma Greta ønsker ikke opkald i aften. Prøv igen i morgen."
        )
        assert _rings(agent) == rung

        # A staff visit still rings (and is declined).
        await nurse.login(DAY, PASSWORD, totp_secret=TOTP_SECRET)
        dial = asyncio.create_task(nurse.dial(TV, purpose="video_visit"))
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 15)
        state = screen_of(agent).state
        assert isinstance(state, Incoming) and not state.contact
        assert {b.id for b in buttons(state)} == {ButtonId.ANSWER, ButtonId.DECLINE}
        screen_of(agent).press(ButtonId.DECLINE)
        with pytest.raises(StaffError, match="declined by the citizen"):
            await dial
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)

        # In the morning it is over: the contact's call rings again.
        tv.clock = lambda: until + 60
        await page.click("#call")
        await wait_for(lambda: _rings(agent) == rung + 2, 15, what="the contact's call ringing")
        screen_of(agent).press(ButtonId.DECLINE)
        await expect(page.locator("#refusal")).to_have_text(
            "Grandma Greta tog ikke imod opkaldet lige nu."
        )
        assert tv.quiet.until is None
    assert page_errors(page) == []
