"""``vaka-staff dial``: a night check (or a video visit) from the command line.

While the unit rings, Ctrl-C or a line ``cancel`` on standard input cancels the call (the unit
stops ringing); in the call, either ends it early. The command ends with one line and its exit
status says how: 0 the call ran for ``--seconds`` (or was ended here), 2 central or the unit
refused it (with the reason), 3 the unit or central ended it early, 130 it was cancelled.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from aiortc.mediastreams import MediaStreamError

from vaka.central_api import password_from_env_or_prompt
from vaka.rtc.ice import configure_ice
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient, StaffError

R = TypeVar("R")

#: Exit status: the unit (or central) ended the call before ``--seconds`` were up.
ENDED_EARLY = 3
#: Exit status: cancelled (Ctrl-C, or ``cancel`` typed) before or during the call.
CANCELLED = 130
#: What a line on standard input must say to cancel or end the call.
STOP_WORDS = frozenset({"cancel", "hangup", "hang up", "q", "quit"})


class Cancelled(Exception):
    """The user cancelled the call (Ctrl-C, or ``cancel`` on standard input)."""


@contextlib.contextmanager
def typed_stop(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` when a line of :data:`STOP_WORDS` arrives on standard input (where standard
    input can be watched: a terminal or a pipe)."""
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    buffer = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            chunk = b""
        if not chunk:  # end of input: nothing more to watch
            loop.remove_reader(fd)
            return
        buffer.extend(chunk)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            if line.decode(errors="replace").strip().lower() in STOP_WORDS:
                stop.set()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError, NotImplementedError):  # e.g. /dev/null, a regular file
        yield
        return
    try:
        yield
    finally:
        loop.remove_reader(fd)


async def _dial(client: StaffClient, args: argparse.Namespace, stop: asyncio.Event) -> Any:
    """Dial, cancelled (:class:`Cancelled`) when ``stop`` is set while the unit rings."""
    dialing = asyncio.create_task(client.dial(args.unit, args.purpose, args.reason))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({dialing, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # Ctrl-C: the dial tells central before this task ends
        await _cancel(dialing)
        raise
    finally:
        stopped.cancel()
    if not dialing.done():
        await _cancel(dialing)
        raise Cancelled
    return dialing.result()


async def _cancel(dialing: "asyncio.Task[Any]") -> None:
    dialing.cancel()
    with contextlib.suppress(asyncio.CancelledError, StaffError):
        await dialing


async def dial_once(args: argparse.Namespace, password: str) -> dict[str, Any]:
    """Log in, dial, receive frames for ``args.seconds``, hang up; a summary of what arrived."""
    stop = asyncio.Event()
    async with StaffClient(args.central) as client:
        await client.login(args.user, password)
        with typed_stop(stop):
            call = await _dial(client, args, stop)
            frames, decoded, size = 0, 0, (0, 0)
            deadline = time.monotonic() + args.seconds
            window = None
            view: dict[str, Any] | None = None
            try:
                while time.monotonic() < deadline and not call.ended.is_set() and not stop.is_set():
                    frame = await call.next_frame(timeout=max(0.5, deadline - time.monotonic()))
                    frames += 1
                    if view is None and getattr(args, "escalate", None):
                        view = await call.escalate(args.escalate)
                    image = frame.to_ndarray(format="bgr24")
                    size = (image.shape[1], image.shape[0])
                    if decode_pattern(image) is not None:
                        decoded += 1
                    if args.show:
                        import cv2

                        window = f"{args.unit} ({args.purpose})"
                        cv2.imshow(window, image)
                        cv2.waitKey(1)
            except (TimeoutError, MediaStreamError):  # no picture in time, or the call ended
                pass
            except asyncio.CancelledError:  # Ctrl-C: hang up below, then stop
                stop.set()
                raise
            finally:
                # Over before its time, and not from here: the unit (or central) ended it; its
                # word on why is on the way.
                early = not stop.is_set() and time.monotonic() < deadline
                if early:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(call.ended.wait(), 3)
                reason = await call.hangup()
                if window is not None:
                    import cv2

                    cv2.destroyAllWindows()
        return {
            "unit": args.unit,
            "call_id": call.call_id,
            "frames": frames,
            "size": list(size),
            "pattern_frames": decoded,
            "timings_ms": call.timings.as_ms(),
            "ended": reason,
            "ended_by": "unit" if early else "you",
            "view": None if view is None else view.get("level"),
            "view_reason": None if view is None else view.get("reason"),
            # the unit's last scene estimate of a night check (words, never a picture)
            "estimate": _estimate(call.estimate),
        }


def _estimate(said: dict[str, Any] | None) -> dict[str, Any] | None:
    if said is None:
        return None
    return {"movement": said.get("movement"), "person_in_bed": said.get("person_in_bed")}


def run_as_staff(
    args: argparse.Namespace, work: Callable[[str], Coroutine[Any, Any, R]]
) -> R | None:
    """Run ``work(password)`` for ``--user`` (password from the environment or the terminal,
    ICE on ``--ice-address`` if given); ``None`` after printing central's refusal."""
    password = password_from_env_or_prompt(args.user)
    if getattr(args, "ice_address", None):
        configure_ice(args.ice_address)
    try:
        return asyncio.run(work(password))
    except StaffError as err:
        print(f"vaka-staff: {err}", file=sys.stderr)
        return None


def run_dial(args: argparse.Namespace) -> int:
    """Run ``dial`` and print the result on one line (see the module for the exit status)."""
    try:
        result = run_as_staff(args, lambda password: dial_once(args, password))
    except (KeyboardInterrupt, Cancelled):
        print(f"vaka-staff: call to {args.unit} cancelled", file=sys.stderr)
        return CANCELLED
    if result is None:
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        t = result["timings_ms"]
        ended = "ended by the unit" if result["ended_by"] == "unit" else "ended"
        view = ""
        if result["view"] is not None:
            view = f"; view {result['view']}"
            if result["view_reason"]:
                view += f" ({result['view_reason']})"
        if result["estimate"] is not None:
            estimate = result["estimate"]
            view += f"; movement {estimate['movement']}, person in bed {estimate['person_in_bed']}"
        print(
            f"{result['unit']}: {result['frames']} frames {result['size'][0]}x{result['size'][1]}"
            f", first frame after {t.get('first_frame', '?')} ms{view}; {ended}: {result['ended']}"
        )
    return ENDED_EARLY if result["ended_by"] == "unit" else 0
