"""``vaka-provision``: the technician's tool.

Unit commands talk to central (``--central URL --user ID``, password from ``VAKA_PASSWORD`` or
asked): ``list``, ``status``, ``approve``, ``assign``, ``push-config``, ``rotate``, ``revoke``,
``decommission``. The first one logs in (``login`` does only that) and keeps the session in a
0600 file until central ends it or ``logout`` (:mod:`vaka.provisioning.session`).
``pki-init``/``pki-issue`` manage a local PKI directory for a first installation. Exit status:
0 on success, 2 with the reason on stderr when refused; ``--json`` prints machine-readable output.
"""

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

from vaka.errors import VakaError
from vaka.protocol.topics import DEVICE_ID_PATTERN
from vaka.provisioning import pki
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.technician import (
    UNIT_COMMANDS,
    add_unit_commands,
    run_logout,
    run_unit_command,
)

IDENTITY = re.compile(rf"{DEVICE_ID_PATTERN}|central-[a-z0-9-]{{1,30}}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaka-provision", description="Provision Vaka units.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("pki-init", help="create the client CA, server CA and broker certificate")
    init.add_argument("--dir", type=Path, required=True)
    init.add_argument("--broker-name", action="append", help="broker host name or IP (repeatable)")
    issue = sub.add_parser("pki-issue", help="issue a client certificate (unit or central)")
    issue.add_argument("identity", help="u-... for a unit, central-... for a central instance")
    issue.add_argument("--dir", type=Path, required=True)
    issue.add_argument("--days", type=float, default=7.0)
    add_unit_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "logout":
        return run_logout()
    if args.command in UNIT_COMMANDS:
        return run_unit_command(args)
    try:
        if args.command == "pki-init":
            names = tuple(args.broker_name or ["localhost", "127.0.0.1"])
            local = LocalPki(args.dir, broker_names=names).ensure()
            result = {
                "client_ca": str(local.client_ca_cert),
                "claim_ca": str(local.claim_ca_cert),
                "server_ca": str(local.server_ca_cert),
                "broker_cert": str(local.broker_cert),
            }
        else:
            if not IDENTITY.fullmatch(args.identity):
                raise VakaError(
                    f"refused: {args.identity!r} is neither a unit id (u-...) nor a central "
                    "identity (central-...)"
                )
            if not 0 < args.days <= 90:
                raise VakaError("refused: --days must be between 0 and 90")
            local = LocalPki(args.dir)
            if not local.client_ca_cert.exists():
                raise VakaError(f"no PKI in {args.dir}: run `vaka-provision pki-init` first")
            files = local.client(args.identity, dt.timedelta(days=args.days), renew=True)
            result = {
                "identity": args.identity,
                "cert": str(files.cert),
                "key": str(files.key),
                "server_ca": str(files.server_ca),
                "expires": dt.datetime.fromtimestamp(pki.cert_expiry(files.cert), dt.UTC).isoformat(
                    timespec="seconds"
                ),
            }
    except VakaError as err:
        print(f"vaka-provision: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:12} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
