"""``vaka-staff dial``: a night check from the command line."""

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from vaka.central_api import password_from_env_or_prompt
from vaka.rtc.ice import configure_ice
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient, StaffError

R = TypeVar("R")


async def dial_once(args: argparse.Namespace, password: str) -> dict[str, Any]:
    """Log in, dial, receive frames for ``args.seconds``, hang up; a summary of what arrived."""
    async with StaffClient(args.central) as client:
        await client.login(args.user, password)
        call = await client.dial(args.unit, args.purpose, args.reason)
        frames, decoded, size = 0, 0, (0, 0)
        deadline = time.monotonic() + args.seconds
        window = None
        try:
            while time.monotonic() < deadline and not call.ended.is_set():
                frame = await call.next_frame(timeout=max(0.5, deadline - time.monotonic()))
                frames += 1
                image = frame.to_ndarray(format="bgr24")
                size = (image.shape[1], image.shape[0])
                if decode_pattern(image) is not None:
                    decoded += 1
                if args.show:
                    import cv2

                    window = f"{args.unit} ({args.purpose})"
                    cv2.imshow(window, image)
                    cv2.waitKey(1)
        except TimeoutError:
            pass
        finally:
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
        }


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
    """Run ``dial`` and print the result; exit status 2 with a reason when refused."""
    result = run_as_staff(args, lambda password: dial_once(args, password))
    if result is None:
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        t = result["timings_ms"]
        print(
            f"{result['unit']}: {result['frames']} frames {result['size'][0]}x{result['size'][1]}"
            f", first frame after {t.get('first_frame', '?')} ms; ended: {result['ended']}"
        )
    return 0
