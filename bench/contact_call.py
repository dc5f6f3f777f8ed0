"""A contact's call next to a staff video visit: from pressing Call to the caller's first frame
decoded on the TV, both paths measured in the same run, on the same stack and the same unit.

The local stack (PKI, Mosquitto, central in this process) and one simulated TV unit (in this
process too, so its decoder's frame count is read directly). The staff side is the Python staff
client (log-in with a one-time code, ``/api/calls``); the contact's side is the same WebRTC peer
on the contact's own door (an invitation redeemed, a password set, ``/api/contact/call`` with
the contact's session cookie). Both send a moving test pattern and a tone. The TV answers both
at once (a signed auto-answer with a 0 s countdown: the staff group's rule, the contact's
``auto_answer``), so what differs is only the path: the contact's rules against the permission
matrix, the contact's session against the staff session. Calls alternate between the two paths.

Prints one JSON object: the median and p90 per path (ms) and the contact/staff ratio of the
medians. ``python bench/contact_call.py --quick`` checks that it works (3 calls per path).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if not __package__:  # run as a script: make ``bench`` importable (for the same layout)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

if TYPE_CHECKING:
    from vaka.agent.app import Agent
    from vaka.central.service import CentralService
    from vaka.staff.call import StaffCall

UNIT = "u-tv"
CITIZEN = "c-3003"
STAFF = "s-day"
PASSWORD = "correct horse battery"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
CONTACT_PASSWORD = "a long family password"
FRAME_TIMEOUT_S = 15.0


def log(text: str) -> None:
    """Progress goes to stderr; stdout carries only the result."""
    print(f"[contact_call {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def directory() -> dict[str, Any]:
    """A day nurse who may visit the citizen's TV; the citizen's consent is not required here."""
    return {
        "group": [{"id": "g-day", "name": "Home care, day"}],
        "staff": [
            {
                "id": STAFF,
                "name": "Dana Day",
                "role": "day_staff",
                "groups": ["g-day"],
                "password": PASSWORD,
                "totp_secret": TOTP_SECRET,
            }
        ],
        "citizen": [{"id": CITIZEN, "units": [UNIT]}],
        "permission": [{"group": "g-day", "citizen": CITIZEN, "purposes": ["video_visit"]}],
    }


class ContactPeer:
    """The contact's side: the staff client's WebRTC peer on the contact's door and cookie."""

    def __init__(self, url: str) -> None:
        from vaka.staff.client import StaffClient

        self.url = url
        self.client = StaffClient(url)

    async def __aenter__(self) -> ContactPeer:
        await self.client.__aenter__()
        # The contact's session is a cookie for a loopback address: an "unsafe" jar keeps it.
        await self.client.http.close()
        self.client._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def enrol(self, code: str) -> None:
        """Redeem the invitation and set a password: a full contact session."""
        for path, body in (
            ("/api/contact/redeem", {"code": code}),
            ("/api/contact/password", {"password": CONTACT_PASSWORD}),
        ):
            async with self.client.http.post(
                self.url + path, json=body, headers={"Origin": self.url}
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{path}: {resp.status} {await resp.text()}")

    async def dial(self, **media: Any) -> StaffCall:
        """Dial the citizen's TV through ``/api/contact/call``."""
        client = self.client

        async def prepare(fields: Any) -> aiohttp.ClientWebSocketResponse:
            ws = await client.http.ws_connect(
                f"{self.url}/api/contact/call", headers={"Origin": self.url}, heartbeat=10
            )
            await ws.send_json({"type": "prepare", **fields})
            return ws

        client._prepare = prepare  # type: ignore[method-assign]
        client._token = "the contact's cookie"  # dial() only checks that there is a session
        return await client.dial(UNIT, purpose="contact_call", **media)


@contextlib.asynccontextmanager
async def world(root: Path) -> AsyncIterator[tuple[CentralService, Agent]]:
    """The stack, central with a 0 s contact auto-answer, and the TV unit online."""
    from vaka.devstack.central import load_directory, push_unit_config, running_central
    from vaka.devstack.polling import wait_for
    from vaka.devstack.stack import LocalStack
    from vaka.devstack.units import running_agent, unit_config
    from vaka.provisioning.localpki import LocalPki

    pki = LocalPki(root / "pki").ensure()
    with LocalStack(root / "stack", pki=pki) as stack:
        stack.start_broker()
        config = stack.central_config()
        calls = config.calls.model_copy(update={"contact_auto_answer_s": 0})
        async with running_central(config.model_copy(update={"calls": calls})) as central:
            await load_directory(central, directory())
            media = {"width": 320, "height": 240, "fps": 15, "audio": "synthetic"}
            tv = {"screen": "headless", "language": "en", "idle_standby_s": 600}
            unit = unit_config(stack.broker, UNIT, "tv", media=media, tv=tv)
            async with running_agent(unit) as agent:
                rules = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 0}]
                await push_unit_config(central, UNIT, "tv", 1, language="en", auto_answer=rules)
                await wait_for(lambda: agent.config_store.version == 1, 10)
                yield central, agent


def remote_frames(agent: Agent) -> int:
    """The caller's frames the TV has decoded in the current call."""
    assert agent.tv is not None
    remote = agent.tv.call_media.remote
    return 0 if remote is None else int(remote.frames)


async def first_frame_ms(agent: Agent, dial: Any) -> float:
    """Press Call (``dial``) → the caller's first frame decoded on the TV, in ms; hang up."""
    from vaka.agent.media.audio import ToneTrack
    from vaka.staff.call import PatternVideoTrack

    started = time.perf_counter()
    call = await dial(send_video=PatternVideoTrack(), send_audio=ToneTrack(1000))
    deadline = started + FRAME_TIMEOUT_S
    while remote_frames(agent) < 1:
        if time.perf_counter() > deadline:
            raise TimeoutError("no frame of the caller on the TV")
        await asyncio.sleep(0.002)
    took = (time.perf_counter() - started) * 1000
    # Hang up once the unit has recorded the call as started (its shutter open), as a person
    # would: a call cut before that is recorded as one that never started.
    from vaka.agent.call.state import CallPhase
    from vaka.devstack.polling import wait_for

    await wait_for(lambda: agent.tv is not None and agent.tv.call.phase is CallPhase.IN_CALL, 10)
    await asyncio.sleep(0.5)
    await call.hangup()
    await call.close()
    return took


async def idle(agent: Agent) -> None:
    """Wait until the TV is idle again (the call's media gone)."""
    from vaka.agent.call.state import CallPhase
    from vaka.devstack.polling import wait_for

    assert agent.tv is not None
    await wait_for(lambda: agent.tv is not None and agent.tv.call.phase is CallPhase.IDLE, 10)
    await wait_for(lambda: remote_frames(agent) == 0, 10)


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def run(calls: int) -> dict[str, Any]:
    from vaka.staff.client import StaffClient

    with tempfile.TemporaryDirectory(prefix="vaka-contact-bench-") as tmp:
        async with world(Path(tmp)) as (central, agent):
            staff = StaffClient(central.url)
            await staff.__aenter__()
            contact_peer = ContactPeer(central.url)
            await contact_peer.__aenter__()
            try:
                await staff.login(STAFF, PASSWORD, totp_secret=TOTP_SECRET)
                added = await asyncio.to_thread(_add_contact, central)
                await contact_peer.enrol(added)
                paths = {
                    "staff_video_visit": lambda **m: staff.dial(UNIT, purpose="video_visit", **m),
                    "contact_call": contact_peer.dial,
                }
                samples: dict[str, list[float]] = {name: [] for name in paths}
                # One call per path first, not counted: the first call loads the media stack.
                for dial in paths.values():
                    await first_frame_ms(agent, dial)
                    await idle(agent)
                for i in range(calls):
                    order = list(paths.items()) if i % 2 == 0 else list(paths.items())[::-1]
                    for name, dial in order:
                        took = await first_frame_ms(agent, dial)
                        samples[name].append(took)
                        log(f"{name} #{i + 1}: {took:.0f} ms")
                        await idle(agent)
            finally:
                await contact_peer.__aexit__(None, None, None)
                await staff.__aexit__(None, None, None)
    result: dict[str, Any] = {name: figures(s) for name, s in samples.items()}
    result["calls_per_path"] = calls
    result["contact_to_staff_ratio"] = round(
        result["contact_call"]["median_ms"] / result["staff_video_visit"]["median_ms"], 3
    )
    return result


def _add_contact(central: CentralService) -> str:
    """A contact set to be answered by itself, and a fresh invitation code for it."""
    from vaka.central.circle.contacts import ContactRules
    from vaka.central.circle.invitations import Invitations

    rules = ContactRules(call_from_min=0, call_until_min=24 * 60, auto_answer=True)
    contact = central.contacts.add(
        CITIZEN, "Anna", "Greta", "granddaughter", None, rules, STAFF, require_consent=False
    )
    return Invitations(central.engine).create(contact.contact_id, STAFF).code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per path (default 20)")
    parser.add_argument("--quick", action="store_true", help="3 calls per path: does it work")
    args = parser.parse_args(argv)
    result = asyncio.run(run(3 if args.quick else args.calls))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
