"""``vaka-central``: run the central service, write the broker's configuration, offline tools."""

import argparse
import asyncio
import datetime as dt
import logging
import signal
import sys
from pathlib import Path

from vaka.central.access.secret_box import SecretBox, write_new_key
from vaka.central.audit.reports import supervisions, supervisions_csv
from vaka.central.audit.trail import AuditLog
from vaka.central.broker.broker import BrokerSettings, write_broker_config
from vaka.central.broker.emqx import EmqxNode, write_emqx_config
from vaka.central.directory.directory import Directory
from vaka.central.directory.spec import load_directory_file
from vaka.central.service import CentralService
from vaka.central.settings.config import load_central_config
from vaka.central.storage import migrate
from vaka.central.storage.engine import open_engine
from vaka.errors import ConfigError, VakaError


def _database_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """The commands that work on the database alone: audit, report, directory, db."""
    audit = sub.add_parser("audit", help="check the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="recompute the hash chain")
    verify.add_argument("--database", required=True, help="SQLAlchemy URL, e.g. sqlite:///c.db")
    verify.add_argument("--expect-head", help="SEQ:HASH anchored earlier (`audit head`)")
    head = audit_sub.add_parser("head", help="print the newest SEQ:HASH to anchor elsewhere")
    head.add_argument("--database", required=True)

    report = sub.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    sup = report_sub.add_parser("supervisions", help="performed night checks as CSV")
    sup.add_argument("--database", required=True)
    sup.add_argument("--from", dest="since", required=True, type=_date, help="YYYY-MM-DD")
    sup.add_argument("--to", dest="until", required=True, type=_date, help="YYYY-MM-DD (excl.)")
    sup.add_argument("--out", type=Path, help="write here instead of standard output")

    directory = sub.add_parser("directory", help="staff, groups, citizens, permissions")
    directory_sub = directory.add_subparsers(dest="directory_command", required=True)
    load = directory_sub.add_parser("load", help="load a directory TOML file")
    load.add_argument("file", type=Path)
    load.add_argument("--database", required=True)
    load.add_argument(
        "--totp-key",
        type=Path,
        help="the key that seals one-time code secrets ([staff_access] totp_key_file)",
    )

    db = sub.add_parser("db", help="the database's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        (
            "upgrade",
            "bring the schema to this release's newest revision (central does it at start)",
        ),
        ("current", "print the database's schema revision and this release's newest"),
    ):
        command = db_sub.add_parser(name, help=text)
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", type=Path, help="central configuration (its [database] url)")
        where.add_argument("--database", help="SQLAlchemy URL, e.g. sqlite:///c.db")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaka-central", description="Vaka's central service.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the central service")
    serve.add_argument("--config", type=Path, required=True, help="central configuration (TOML)")

    _add_broker_config(sub)

    _database_commands(sub)

    key = sub.add_parser("totp-key", help="make the key that seals staff TOTP secrets at rest")
    key.add_argument("file", type=Path, help="where to write it (mode 0600; never overwritten)")

    return p


def _add_broker_config(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``broker-config``: Mosquitto's files, or one EMQX cluster node's."""
    broker = sub.add_parser("broker-config", help="write the broker's configuration and ACL")
    broker.add_argument(
        "--kind",
        choices=["mosquitto", "emqx"],
        default="mosquitto",
        help="mosquitto (one machine) or emqx (a cluster node; EMQX 5.8)",
    )
    broker.add_argument("--out", type=Path, required=True, help="directory for the files")
    broker.add_argument("--port", type=int, default=8883)
    broker.add_argument("--bind", default="0.0.0.0")
    broker.add_argument("--client-ca", type=Path, required=True, help="CA that signs clients")
    broker.add_argument("--server-cert", type=Path, required=True)
    broker.add_argument("--server-key", type=Path, required=True)
    broker.add_argument("--crl", type=Path, help="certificate revocation list (PEM)")
    broker.add_argument("--claim-port", type=int, help="port of the enrolment listener (8884)")
    broker.add_argument("--claim-ca", type=Path, help="CA of claim identities (with --claim-port)")
    broker.add_argument(
        "--pid-file", type=Path, help="where the broker writes its pid (central reloads the CRL)"
    )
    broker.add_argument(
        "--central-identity",
        action="append",
        default=None,
        help="certificate CN of a central instance (repeatable; default central-1)",
    )
    broker.add_argument("--emqx-node", default="emqx@127.0.0.1", help="this EMQX node's name")
    broker.add_argument(
        "--emqx-seed",
        action="append",
        default=None,
        help="an EMQX node of the cluster, e.g. emqx@10.0.0.11 (repeatable; all nodes)",
    )
    broker.add_argument("--emqx-data-dir", default="/var/lib/emqx", help="EMQX's data directory")


async def _serve(config_path: Path) -> None:
    service = CentralService(load_central_config(config_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with service:
        await stop.wait()


def _date(text: str) -> float:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def _db_command(args: argparse.Namespace) -> int:
    """``db upgrade`` and ``db current``."""
    url = load_central_config(args.config).database.url if args.config else args.database
    engine = open_engine(url, upgrade=False)
    try:
        if args.db_command == "current":
            found = migrate.current(engine)
            print(
                f"database at revision {found or 'none'}; this release's newest is {migrate.head()}"
            )
            return 0
        done = migrate.upgrade(engine)
    finally:
        engine.dispose()
    if done.before == done.after:
        print(f"database schema already at revision {done.after}")
    else:
        print(f"database schema upgraded from revision {done.before or 'none'} to {done.after}")
    return 0


def _offline_command(args: argparse.Namespace) -> int:
    """Commands that work on the database directly (no broker needed). Those that only read
    leave the schema alone and want it current; ``directory load`` upgrades it first."""
    engine = open_engine(args.database, upgrade=args.command == "directory")
    if args.command != "directory":
        migrate.require_current(engine)
    if args.command == "directory":
        spec = load_directory_file(args.file)
        Directory(engine, SecretBox.from_file(args.totp_key)).load(spec)
        print(
            f"loaded {len(spec.staff)} staff, {len(spec.group)} groups, "
            f"{len(spec.citizen)} citizens, {len(spec.permission)} permissions, "
            f"{len(spec.schedule)} schedules"
        )
        return 0
    audit = AuditLog(engine)
    if args.command == "report":
        text = supervisions_csv(supervisions(audit, args.since, args.until))
        if args.out:
            args.out.write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.audit_command == "head":
        seq, digest = audit.head()
        print(f"{seq}:{digest}")
        return 0
    expect = None
    if args.expect_head:
        seq_text, _, digest = args.expect_head.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise ConfigError("--expect-head must be SEQ:HASH as printed by `audit head`")
        expect = (int(seq_text), digest)
    result = audit.verify(expect)
    if result.ok:
        print(f"audit trail intact: {result.entries} entries")
        return 0
    print(f"audit trail BROKEN: {result.problem}", file=sys.stderr)
    return 1


def _broker_config(args: argparse.Namespace) -> Path:
    """Write the chosen broker's configuration; the path of its main file."""
    settings = BrokerSettings(
        port=args.port,
        bind=args.bind,
        client_ca=args.client_ca,
        server_cert=args.server_cert,
        server_key=args.server_key,
        crl=args.crl,
        claim_port=args.claim_port,
        claim_ca=args.claim_ca,
        pid_file=args.pid_file,
        central_identities=tuple(args.central_identity or ["central-1"]),
    )
    if args.kind == "emqx":
        node = EmqxNode(
            name=args.emqx_node, seeds=tuple(args.emqx_seed or ()), data_dir=args.emqx_data_dir
        )
        return write_emqx_config(args.out, settings, node)
    return write_broker_config(args.out, settings)


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
            print(f"wrote {_broker_config(args)}")
        elif args.command == "totp-key":
            try:
                write_new_key(args.file)
            except FileExistsError:
                raise ConfigError(f"{args.file} exists: a key is never overwritten") from None
            except OSError as err:
                raise ConfigError(f"cannot write {args.file}: {err.strerror}") from None
            print(f'wrote {args.file}; set [staff_access] totp_key_file = "{args.file}"')
        elif args.command in ("audit", "report", "directory"):
            return _offline_command(args)
        elif args.command == "db":
            return _db_command(args)
    except VakaError as err:
        print(f"vaka-central: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
