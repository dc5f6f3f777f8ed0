"""What every part of the call set-up benchmark shares: names, limits, progress log, children."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from typing import Any

from vaka.agent.media.settings import MediaSettings

HOST = "127.0.0.1"
UNIT = "u-bench-cam"
STAFF = "s-bench"
PASSWORD = "correct horse battery"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # the bench nurse's pre-enrolled second factor
FPS = 15
SMALL = (640, 480)
LARGE = (1280, 720)
MAX_BITRATE_BPS = 1_000_000
"""The agent's default ``max_bitrate_bps``; the bare sender gets the same cap."""
DEFAULT_GATHER_BOUND_S: float = MediaSettings.model_fields["ice_gather_timeout_s"].default
"""The shipped ``ice_gather_timeout_s`` default (``MediaSettings``)."""
CALL_TIMEOUT_S = 30.0
"""Longest one call set-up may take before the bench gives up on it."""
FRAME_TIMEOUT_S = 5.0
"""Longest wait for the first frame once the whole path's call is answered."""
PHASES = ("gather", "signalling", "ice_dtls", "first_keyframe")


def log(text: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON result."""
    print(f"[call_setup {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Wait for ``proc`` to exit after a SIGTERM, killing it if it does not. Safe twice."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdout, proc.stdin):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
