"""``vaka-central``: run the central service, write the broker's configuration, run the demo."""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from vaka.central.broker import BrokerSettings, write_broker_config
from vaka.central.config import load_central_config
from vaka.central.demo import demo_seconds_from_env, prepare_demo, run_demo
from vaka.central.service import CentralService
from vaka.errors import VakaError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaka-central", description="Vaka's central service.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the central service")
    serve.add_argument("--config", type=Path, required=True, help="central configuration (TOML)")

    broker = sub.add_parser("broker-config", help="write Mosquitto's configuration and ACL")
    broker.add_argument("--out", type=Path, required=True, help="directory for mosquitto.conf")
    broker.add_argument("--port", type=int, default=8883)
    broker.add_argument("--bind", default="0.0.0.0")
    broker.add_argument("--client-ca", type=Path, required=True, help="CA that signs clients")
    broker.add_argument("--server-cert", type=Path, required=True)
    broker.add_argument("--server-key", type=Path, required=True)
    broker.add_argument("--crl", type=Path, help="certificate revocation list (PEM)")
    broker.add_argument(
        "--central-identity",
        action="append",
        default=None,
        help="certificate CN of a central instance (repeatable; default central-1)",
    )

    demo = sub.add_parser("demo", help="broker, central and simulated units on this machine")
    demo.add_argument("--dir", type=Path, default=Path(".vaka-demo"))
    demo.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: $DEMO_SECONDS)"
    )
    demo.add_argument("--http-port", type=int, default=8080)
    return p


async def _serve(config_path: Path) -> None:
    service = CentralService(load_central_config(config_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with service:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "serve":
            asyncio.run(_serve(args.config))
        elif args.command == "broker-config":
            path = write_broker_config(
                args.out,
                BrokerSettings(
                    port=args.port,
                    bind=args.bind,
                    client_ca=args.client_ca,
                    server_cert=args.server_cert,
                    server_key=args.server_key,
                    crl=args.crl,
                    central_identities=tuple(args.central_identity or ["central-1"]),
                ),
            )
            print(f"wrote {path}")
        elif args.command == "demo":
            seconds = args.seconds if args.seconds is not None else demo_seconds_from_env()
            return asyncio.run(run_demo(prepare_demo(args.dir, args.http_port), seconds))
    except VakaError as err:
        print(f"vaka-central: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
