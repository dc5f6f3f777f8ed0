"""``vaka-provision update``: system update roll-outs through central's API.

``update UNIT [UNIT…] | --profile P --bundle URL-or-FILE --version V [--percent N]`` makes a
roll-out and orders its first stage (``--percent`` of the units, all by default);
``update --all ROLLOUT`` orders the rest; ``update --status [ROLLOUT]`` shows the roll-outs, or
one with its units' steps, and ``update --versions`` the fleet's versions.

A FILE must also be in central's bundle directory (``[updates] bundle_dir``): the tool sends
only its SHA-256 and size, and central finds it there. A URL is a static server the units fetch
from themselves; the tool downloads it once to learn its hash and size (or takes ``--sha256`` and
``--size``).
"""

import argparse
import hashlib
import urllib.request
from pathlib import Path
from typing import Any

from vaka.central_api import ApiError, CentralApi


def add_update_options(p: argparse.ArgumentParser) -> None:
    """The options of ``update``."""
    p.add_argument("units", nargs="*", metavar="UNIT", help="the units to update")
    p.add_argument("--profile", choices=["nightcam", "tv"], help="every unit of this profile")
    p.add_argument("--bundle", metavar="URL-or-FILE", help="the bundle (image/bundle.sh)")
    p.add_argument("--version", dest="bundle_version", help="the bundle's version")
    p.add_argument("--sha256", help="the bundle's SHA-256 (a URL is downloaded to learn it)")
    p.add_argument("--size", type=int, help="the bundle's size in bytes (with --sha256)")
    p.add_argument("--percent", type=int, default=100, help="order this share first (1-100)")
    p.add_argument("--all", type=int, metavar="ROLLOUT", help="order the rest of a roll-out")
    p.add_argument(
        "--status", nargs="?", const=0, type=int, metavar="ROLLOUT", help="show roll-outs"
    )
    p.add_argument("--versions", action="store_true", help="the fleet's versions")


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _hash_url(url: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (http(s) checked)
            while block := response.read(1024 * 1024):
                digest.update(block)
                size += len(block)
    except OSError as err:
        raise ApiError(f"cannot fetch the bundle from {url}: {err}") from None
    return digest.hexdigest(), size


def _bundle(args: argparse.Namespace) -> dict[str, Any]:
    if not args.bundle or not args.bundle_version:
        raise ApiError("give --bundle URL-or-FILE and --version (or --all, --status, --versions)")
    source: str = args.bundle
    if source.startswith(("http://", "https://")):
        if args.sha256 and args.size:
            sha, size = args.sha256.lower(), args.size
        else:
            sha, size = _hash_url(source)
        return {"version": args.bundle_version, "sha256": sha, "size": size, "url": source}
    path = Path(source)
    if not path.is_file():
        raise ApiError(f"no bundle file {path}")
    sha, size = _hash_file(path)
    return {"version": args.bundle_version, "sha256": sha, "size": size}


def update_request(api: CentralApi, args: argparse.Namespace) -> Any:
    """What ``update`` asks central, and central's answer."""
    if args.versions:
        return api.request("GET", "/api/fleet/versions")
    if args.status is not None:
        return api.request("GET", f"/api/updates/{args.status}" if args.status else "/api/updates")
    if args.all is not None:
        return api.request("POST", f"/api/updates/{args.all}/all", {})
    if bool(args.units) == bool(args.profile):
        raise ApiError("name the units to update, or --profile (not both)")
    body = _bundle(args)
    body["percent"] = args.percent
    if args.units:
        body["units"] = args.units
    else:
        body["profile"] = args.profile
    return api.request("POST", "/api/updates", body)


def print_update(result: dict[str, Any]) -> None:
    """A roll-out (or the list of them, or the fleet's versions) for a person."""
    if "rollouts" in result:
        for r in result["rollouts"]:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(r["counts"].items()))
            print(f"roll-out {r['rollout_id']:<4} {r['version']:<16} {r['percent']:>3} %  {counts}")
        return
    if "units" in result and "rollout_id" not in result:
        for u in result["units"]:
            print(
                f"{u['unit']:<24} {u['profile'] or '-':<9} {u['system_version'] or '-':<16} "
                f"slot {u['slot'] or '-':<2} agent {u['agent_version'] or '-'}  {u['status']}"
            )
        return
    print(f"roll-out {result['rollout_id']}: {result['version']} ({result['sha256'][:12]}…)")
    print(f"first stage {result['percent']} %; the rest ordered: {bool(result['all_at'])}")
    for u in result["units"]:
        reason = f"  ({u['reason']})" if u["reason"] else ""
        print(f"  {u['unit']:<24} stage {u['stage']}  {u['state']}{reason}")
