"""The measured phases: ramp, steady window, max rate, drain, and the real agent."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

from .backlog import EVENT_UNIT, EventSource, restart_with_backlog, start_night_check_unit
from .common import AGENT_ID, log, merge_errors, percentiles
from .measure import Proc, Sampler
from .processes import BenchProcesses


class Bench(BenchProcesses):
    """Sets everything up, measures, and tears it all down."""

    def ramp(self) -> None:
        """Start the connection ramp and wait until every unit is connected (or gave up)."""
        a = self.args
        broker_rss0 = self.broker_ps.rss_mb()
        loadgen_rss0 = sum(p.rss_mb() for p in self.loadgen_ps)
        sampler = Sampler(
            {"broker": [self.broker_ps], "central": self.central_ps, "loadgen": self.loadgen_ps}
        )
        sampler.start()
        t0 = time.time() + 0.5
        for _, conn in self.workers:
            conn.send(("go", t0))
        planned = a.units / a.ramp_rate
        deadline = time.monotonic() + planned * 3 + 60
        answers: list[dict[str, Any]] = []
        last_log = 0.0
        before, stable = -1, 0
        while time.monotonic() < deadline:
            time.sleep(1)
            sampler.sample()
            answers = self.ask_workers("stats")
            connected = self.total(answers, "connected")
            pending = self.total(answers, "pending_connects")
            if time.monotonic() - last_log >= 5:
                log(
                    f"ramp: {connected}/{a.units} connected, "
                    f"{self.total(answers, 'connect_errors')} connect errors"
                )
                last_log = time.monotonic()
            if connected >= a.units:
                break
            # every connection attempted: wait until the last CONNACKs stop coming
            stable = stable + 1 if pending == 0 and connected == before else 0
            before = connected
            if stable >= 3:
                break
        last = max((x["last_connack"] for x in answers), default=t0)
        window = self.ask_workers("window")
        handshakes = [v for x in window for v in x["handshake_ms"]]
        usage = sampler.result()
        connected = self.total(answers, "connected")
        self.result["ramp"] = {
            "planned_s": round(planned, 1),
            "seconds": round(last - t0, 1),
            "connected": connected,
            "connect_errors": self.total(answers, "connect_errors"),
            "connack_refused": self.total(answers, "connack_refused"),
            "errors": merge_errors(answers),
            "tls_version": answers[0]["tls_version"] if answers else "",
            "connect_ms": percentiles(handshakes),
            "cpu_pct_of_one_core": usage["cpu_pct_of_one_core"],
            "broker_rss_mb_per_1000_connections": round(
                (self.broker_ps.rss_mb() - broker_rss0) * 1000 / max(1, connected), 2
            ),
            "loadgen_rss_mb_per_1000_units": round(
                (sum(p.rss_mb() for p in self.loadgen_ps) - loadgen_rss0)
                * 1000
                / max(1, connected),
                2,
            ),
        }
        log(f"ramp: {connected} connected in {last - t0:.1f} s (planned {planned:.1f} s)")

    def window(self, seconds: float, offered: float, label: str) -> dict[str, Any]:
        """Measure one steady window of ``seconds``."""
        sampler = Sampler(
            {
                "broker": [self.broker_ps],
                "central": self.central_ps,
                "loadgen": self.loadgen_ps,
                "bare": self.bare_ps,
            }
        )
        self.ask_workers("window")
        self.central_window()
        c0 = self.central_stats()
        w0 = self.ask_workers("stats")
        bare0 = self.bare_count()
        sampler.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            sampler.sample()
        usage = sampler.result()
        wall = usage["wall_s"]
        bare = self.bare_count() - bare0
        w1 = self.ask_workers("window")
        c1 = self.central_stats()
        latency = self.central_window()
        acks = [v for x in w1 for v in x["ack_ms"]]
        late = [v for x in w1 for v in x["late_ms"]]
        published = self.total(w1, "published") - self.total(w0, "published")
        written = c1["written"] - c0["written"]
        cpu = usage["cpu_pct_of_one_core"]
        out = {
            "label": label,
            "window_s": wall,
            "units_connected": self.total(w1, "connected"),
            "offered_msg_s": round(offered, 1),
            "published_msg_s": round(published / wall, 1),
            "written_msg_s": round(written / wall, 1),
            # CPU per message: the group's CPU seconds in the window over the messages it took
            "central_cpu_us_per_msg": _per_message(cpu["central"], wall, written),
            "broker_cpu_us_per_msg": _per_message(cpu["broker"], wall, published),
            # the same for a bare paho subscriber of every health report (bare.py)
            "bare_subscriber_msg_s": round(bare / wall, 1),
            "bare_subscriber_cpu_us_per_msg": _per_message(cpu["bare"], wall, bare),
            "accepted_msg_s": round((c1["accepted"] - c0["accepted"]) / wall, 1),
            "central_pending_at_end": c1["pending"],
            "refused": c1["refused_total"] - c0["refused_total"],
            "disconnects": self.total(w1, "disconnects") - self.total(w0, "disconnects"),
            "publish_to_commit_ms": latency,
            "central_ingest_stats_latency_ms": c1["health_latency_ms"],
            "puback_ms": percentiles(acks),
            "loadgen_lateness_ms": percentiles(late),
            "cpu_pct_of_one_core": usage["cpu_pct_of_one_core"],
            "rss_mb": usage["rss_mb"],
            "other_processes_cpu_pct": usage["other_processes"],
        }
        log(
            f"{label}: offered {offered:.0f}/s, written {out['written_msg_s']}/s, "
            f"p50 {latency['p50']} ms, p99 {latency['p99']} ms, central "
            f"{out['central_cpu_us_per_msg']} µs/msg (bare subscriber "
            f"{out['bare_subscriber_cpu_us_per_msg']}), cpu {out['cpu_pct_of_one_core']}"
        )
        return out

    def steady(self) -> None:
        """Warm up, then the main steady-state window."""
        a = self.args
        warm = min(a.interval, 10.0)
        log(f"warm-up {warm:.0f} s, then a {a.duration:.0f} s steady window")
        time.sleep(warm)
        connected = self.total(self.ask_workers("stats"), "connected")
        self.result["steady"] = self.window(a.duration, connected / a.interval, "steady")

    def max_rate(self) -> None:
        """Step the offered rate up (shorter interval, same units) until something saturates."""
        a = self.args
        steps = []
        connected = self.total(self.ask_workers("stats"), "connected")
        for rate in a.rates:
            interval = connected / rate
            self.ask_workers("interval", interval)
            time.sleep(max(3.0, min(interval, 10.0)))
            step = self.window(a.step_duration, rate, f"rate {rate:.0f}/s")
            step["interval_s"] = round(interval, 3)
            steps.append(step)
            lat = step["publish_to_commit_ms"]["p99"] or 0
            if (
                step["written_msg_s"] < 0.95 * rate
                or step["published_msg_s"] < 0.95 * rate
                or lat > 2000
            ):
                log(f"saturated at {rate:.0f}/s offered")
                break
        self.result["max_rate"] = steps

    def catch_up(self) -> None:
        """Back to the fleet's own interval; wait (up to 180 s) until central keeps up again
        (a 5 s window's p99 under 1 s), so the backlog phase starts from a steady state."""
        self.ask_workers("interval", self.args.interval)
        self.central_window()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(5)
            p99 = self.central_window()["p99"]
            if p99 is not None and p99 < 1000:
                return
        log("central did not catch up within 180 s; the backlog phase starts anyway")

    def start_events(self) -> None:
        """The events unit starts publishing (checked by :meth:`check_events`)."""
        self.events = EventSource(self)
        self.events.start()

    def backlog(self) -> None:
        """The night-check unit, then central killed and restarted with a backlog."""
        self.catch_up()
        start_night_check_unit(self)
        self.result["backlog"] = restart_with_backlog(self, self.args.backlog, self.args.fill_rate)

    def check_events(self) -> None:
        """Every event the broker acknowledged is in central's store."""
        acked = set(self.events.stop())
        stored: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stored = set(self.ask_central("event_ids", EVENT_UNIT)[0])
            if acked <= stored:
                break
            time.sleep(0.5)
        self.result["events"] = {
            "published_and_acked_by_broker": len(acked),
            "stored_by_central": len(stored & acked),
            "events_lost": len(acked - stored),
            # each lost one's number and publishing time (UTC), against the phase log's times
            "lost": [
                {
                    "n": self.events.published[i][0],
                    "published": time.strftime(
                        "%H:%M:%S", time.gmtime(self.events.published[i][1])
                    ),
                }
                for i in sorted(acked - stored, key=lambda i: self.events.published[i][0])
            ],
        }
        log(f"events: {self.result['events']}")

    def drain(self) -> None:
        """Stop the fleet cleanly, let central drain and compare what was sent with what arrived."""
        final = self.ask_workers("stats")
        for _, conn in self.workers:
            conn.send(("stop",))
        stopped = []
        for proc, conn in self.workers:
            if conn.poll(60):
                with contextlib.suppress(EOFError):
                    stopped.append(conn.recv()[1])
            proc.join(30)
        final = stopped or final
        before = -1
        stats = self.central_stats()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = self.central_stats()
            if stats["pending"] == 0 and stats["accepted"] == before:
                break
            before = stats["accepted"]
            time.sleep(1)
        sent = self.total(final, "births") + self.total(final, "published")
        self.result["totals"] = {
            "births": self.total(final, "births"),
            "health_published": self.total(final, "published"),
            "health_acked": self.total(final, "acked"),
            "central_accepted": stats["accepted"],
            "central_written": stats["written"],
            "central_refused": stats["refused_total"],
            "not_arrived": max(0, sent - stats["accepted"]),
            "disconnects": self.total(final, "disconnects"),
            "errors": merge_errors(final),
            "broker_log_dropping_warnings": self.broker_log().count("being dropped"),
        }

    def measure_agent(self) -> None:
        """One real ``vaka-agent --simulate`` against the same broker: idle CPU and RSS."""
        a = self.args
        assert self.stack is not None
        started = time.monotonic()
        self.agent = agent = self.stack.spawn_unit(
            AGENT_ID, "nightcam", interval_s=a.interval, keepalive_s=10
        )
        online_after = None
        while time.monotonic() - started < 30 and agent.running:
            if self.ask_central("unit", AGENT_ID)[0] == "online":
                online_after = time.monotonic() - started
                break
            time.sleep(0.2)
        if online_after is None:
            tail = agent.tail(600)
            self.result["agent"] = {
                "error": f"agent did not come online (exit {agent.proc.poll()})",
                "log_tail": tail,
            }
            log(f"agent did not come online: {tail}")
            return
        time.sleep(2)  # let start-up work settle
        ps = Proc("agent", psutil.Process(agent.proc.pid))
        sampler = Sampler({"agent": [ps]})
        sampler.start()
        end = time.monotonic() + a.agent_seconds
        while time.monotonic() < end and agent.running:
            time.sleep(0.5)
            sampler.sample()
        usage = sampler.result()
        try:
            uss = float(ps.ps.memory_full_info().uss) / 2**20
        except psutil.Error:
            uss = 0.0
        self.result["agent"] = {
            "online_after_s": round(online_after, 2),
            "window_s": usage["wall_s"],
            "cpu_pct_of_one_core": usage["cpu_pct_of_one_core"]["agent"],
            "rss_mb": usage["rss_mb"].get("agent"),
            "uss_mb": round(uss, 1),
            "health_interval_s": a.interval,
        }
        log(f"agent: {self.result['agent']}")


def _per_message(cpu_pct: float, wall_s: float, messages: int) -> float | None:
    """CPU µs per message from a CPU share (% of one core) over ``wall_s``."""
    if messages <= 0:
        return None
    return round(cpu_pct / 100 * wall_s / messages * 1e6, 1)
