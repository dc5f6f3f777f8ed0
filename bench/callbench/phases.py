"""The run: whole path vs bare pair, streaming, dead STUN server, in that order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaka.rtc.ice import configure_ice

from .bare import bare_pair_call, dead_stun_server
from .common import (
    CALL_TIMEOUT_S,
    DEFAULT_GATHER_BOUND_S,
    FPS,
    HOST,
    LARGE,
    PASSWORD,
    SMALL,
    STAFF,
    TOTP_SECRET,
    log,
)
from .figures import SetupSample, median_total, ratio, summarise_setups
from .report import aims, machine
from .stack import running_bench
from .streaming import bare_sender_stream


@dataclass
class Plan:
    """What one run does."""

    calls: int
    dead_unbounded_calls: int
    default_bound_calls: int
    warmup_s: float
    window_s: float
    gather_timeout_s: float
    quick: bool
    agent_env: dict[str, str] = field(default_factory=dict)
    broker_nodelay: bool = False


async def timed_calls(
    label: str, n: int, make: Callable[[], Awaitable[SetupSample]]
) -> tuple[list[SetupSample], list[str]]:
    """``n`` call set-ups from ``make``; a failed one is skipped and its error returned."""
    samples: list[SetupSample] = []
    failures: list[str] = []
    for _ in range(n):
        try:
            samples.append(await asyncio.wait_for(make(), 2 * CALL_TIMEOUT_S))
        except Exception as err:
            failures.append(f"{type(err).__name__}: {err}"[:300])
            log(f"{label}: a call failed: {failures[-1]}")
    return samples, failures


async def interleaved(
    n: int,
    whole: Callable[[], Awaitable[SetupSample]],
    bare: Callable[[], Awaitable[SetupSample]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``n`` whole-path and ``n`` bare calls, alternating, after one unmeasured warm-up each."""
    await timed_calls("warm-up whole", 1, whole)
    await timed_calls("warm-up bare", 1, bare)
    whole_samples: list[SetupSample] = []
    bare_samples: list[SetupSample] = []
    whole_failed: list[str] = []
    bare_failed: list[str] = []
    for i in range(n):
        got, failed = await timed_calls("whole path", 1, whole)
        whole_samples += got
        whole_failed += failed
        got, failed = await timed_calls("bare pair", 1, bare)
        bare_samples += got
        bare_failed += failed
        if (i + 1) % 5 == 0 or i + 1 == n:
            log(f"  {i + 1}/{n} calls each")
    return summarise_setups(whole_samples, whole_failed), summarise_setups(
        bare_samples, bare_failed
    )


async def run(plan: Plan, directory: Path) -> dict[str, Any]:
    """The whole benchmark; returns the result object."""
    from vaka.staff.client import StaffClient

    configure_ice([HOST], plan.gather_timeout_s)
    result: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__}
    broker_lines = ["set_tcp_nodelay true"] if plan.broker_nodelay else []
    async with running_bench(directory, plan.agent_env, broker_lines) as bench:
        # 1 + 2: whole path and bare pair, no ICE servers, 640x480.
        await bench.start_agent()
        await asyncio.sleep(1.0)
        rss_after: list[float | None] = [bench.agent_rss_mb()]

        async def whole_call() -> SetupSample:
            try:
                return await bench.whole_call()
            finally:
                rss_after.append(bench.agent_rss_mb())

        log(f"whole path vs bare pair, {plan.calls} calls each")
        whole, bare = await interleaved(plan.calls, whole_call, bare_pair_call)
        result["setup"] = {
            "whole_path": whole,
            "bare_pair": bare,
            "ratio_median": ratio(median_total(whole), median_total(bare)),
            "ratio_p95": ratio(whole["total_ms"]["p95"], bare["total_ms"]["p95"]),
            "agent_rss_mb_before_and_after_each_call": [
                None if v is None else round(v, 1) for v in rss_after
            ],
        }

        # 4: streaming, agent vs bare sender, at both sizes.
        streaming: dict[str, Any] = {}
        for size in (SMALL, LARGE):
            name = f"{size[0]}x{size[1]}"
            # A fresh agent for each size, as fresh as the bare sender child.
            await bench.start_agent(width=size[0], height=size[1])
            await asyncio.sleep(1.0)
            log(f"streaming {name}@{FPS}: agent, then bare sender ({plan.window_s:.0f} s each)")
            agent = await bench.agent_stream(plan.warmup_s, plan.window_s)
            bare_tx = await bare_sender_stream(
                directory, size[0], size[1], plan.warmup_s, plan.window_s
            )
            streaming[name] = {
                "agent": agent.as_dict(),
                "bare_sender": bare_tx.as_dict(),
                "cpu_ratio": ratio(agent.cpu_pct, bare_tx.cpu_pct),
                "rss_ratio": ratio(agent.rss_mb, bare_tx.rss_mb),
            }
        result["streaming"] = streaming

        # 3: a STUN server that never answers.
        dead_stun: dict[str, Any] = {}
        with dead_stun_server() as stun:
            url = stun.urls if isinstance(stun.urls, str) else stun.urls[0]
            dead_stun["server"] = url
            servers = [stun]
            log(f"dead STUN {url}: bare pair with aioice's own 5 s wait")
            configure_ice([HOST], 5.0)
            try:
                samples, failed = await timed_calls(
                    "bare, unbounded",
                    plan.dead_unbounded_calls,
                    lambda: bare_pair_call(ice_servers=servers),
                )
            finally:
                configure_ice([HOST], plan.gather_timeout_s)
            dead_stun["bare_pair_unbounded"] = summarise_setups(samples, failed)

            bound = plan.gather_timeout_s
            await bench.start_agent(ice_servers=[{"urls": [url]}], ice_gather_timeout_s=bound)
            log(f"dead STUN, gathering bounded to {bound} s both sides, {plan.calls} calls each")
            original = bench.staff.ice_servers
            bench.staff.ice_servers = servers
            try:
                whole, bare = await interleaved(
                    plan.calls, bench.whole_call, lambda: bare_pair_call(ice_servers=servers)
                )
            finally:
                bench.staff.ice_servers = original
            dead_stun["gather_timeout_s"] = bound
            dead_stun["whole_path_bounded"] = whole
            dead_stun["bare_pair_bounded"] = bare

            if plan.default_bound_calls:
                default = DEFAULT_GATHER_BOUND_S
                await bench.start_agent(ice_servers=[{"urls": [url]}])
                configure_ice([HOST], default)
                log(f"dead STUN, shipped default bound {default} s, whole path")
                try:
                    with_stun = StaffClient(bench.central.url, ice_servers=servers)
                    async with with_stun:
                        await with_stun.login(STAFF, PASSWORD, totp_secret=TOTP_SECRET)
                        bench.staff, plain = with_stun, bench.staff
                        try:
                            samples, failed = await timed_calls(
                                "whole, default bound", plan.default_bound_calls, bench.whole_call
                            )
                        finally:
                            bench.staff = plain
                finally:
                    configure_ice([HOST], plan.gather_timeout_s)
                dead_stun["whole_path_default_bound"] = summarise_setups(samples, failed)
        result["dead_stun"] = dead_stun
        result["notes"] = bench.notes
    result["aims"] = aims(result)
    return result
