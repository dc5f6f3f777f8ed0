"""Times as a technician reads them: the local clock and how long ago ("2 min ago"), never
epoch seconds."""

import time


def age(seconds: float) -> str:
    """``seconds`` elapsed in words: "just now", "45 s ago", "2 min ago", "3 h ago",
    "2 days ago"; a negative value is ahead ("in 5 min")."""
    ahead = seconds < 0
    left = abs(seconds)
    if left < 5:
        return "just now"
    if left < 120:
        words = f"{left:.0f} s"
    elif left < 2 * 3600:
        words = f"{left / 60:.0f} min"
    elif left < 2 * 86400:
        words = f"{left / 3600:.0f} h"
    else:
        days = round(left / 86400)
        words = f"{days} days"
    return f"in {words}" if ahead else f"{words} ago"


def local_time(ts: float | None, now: float | None = None) -> str:
    """``ts`` (epoch seconds) on the local clock with its age: "15:02:11 (2 min ago)" today,
    "2026-12-03 15:02 (1 day ago)" on another day; "-" for ``None``."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    moment = time.localtime(ts)
    today = time.localtime(now)
    same_day = moment[:3] == today[:3]
    clock = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", moment)
    return f"{clock} ({age(now - ts)})"
