"""``vaka-agent``: run the unit's agent."""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vaka.agent.gui_preload import preload_gui_if_needed
from vaka.agent.journal import setup_logging
from vaka.agent.memory import limit_malloc_arenas
from vaka.errors import ConfigError

if TYPE_CHECKING:
    from vaka.agent.config import AgentConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaka-agent", description="Run a Vaka unit's agent.")
    p.add_argument("--config", type=Path, required=True, help="agent configuration (TOML)")
    p.add_argument(
        "--simulate", action="store_true", help="run on simulated hardware (no GPIO, camera, CEC)"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


async def _run(config: "AgentConfig") -> None:
    """Enrol first if the unit has no identity, then run the agent until SIGTERM/SIGINT."""
    from vaka.agent.app import Agent
    from vaka.agent.identity import resolve_identity

    loop = asyncio.get_running_loop()

    async def life() -> None:
        # A decommissioned unit wipes its credentials and enrols again, without a restart.
        while await Agent(await resolve_identity(config)).run():
            logging.getLogger(__name__).warning("decommissioned: back to enrolment")

    runner = asyncio.create_task(life())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await runner


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    limit_malloc_arenas()
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    preload_gui_if_needed(args.config)  # before anything imports PyAV
    from vaka.agent.config import load_config

    try:
        config = load_config(args.config)
        setup_logging(args.log_level, config.unit.id)
        if args.simulate:
            config = config.model_copy(
                update={"unit": config.unit.model_copy(update={"simulate": True})}
            )
        asyncio.run(_run(config))
    except ConfigError as err:
        print(f"vaka-agent: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
