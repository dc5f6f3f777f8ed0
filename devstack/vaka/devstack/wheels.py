"""The unit's wheels: vaka-agent and the members it depends on, built from this checkout.

A unit installs vaka-agent and nothing else of Vaka; pip pulls vaka-protocol, vaka-provisioning
and vaka-rtc through its declared dependencies. The image recipe (``image/build.sh``) and the
test that installs the agent alone into a fresh venv both build the wheels here, from a copy of
each member so that the checkout gets no ``build/`` or ``*.egg-info``.

``python -m vaka.devstack.wheels OUT`` writes the wheels into ``OUT``.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: the workspace's root (this file is ``devstack/vaka/devstack/wheels.py``)
REPO = Path(__file__).resolve().parents[3]
#: what a unit installs, in dependency order
UNIT_MEMBERS = ("protocol", "provisioning", "rtc", "agent")


def build_unit_wheels(out: Path, python: str = sys.executable) -> list[Path]:
    """Build the wheels of :data:`UNIT_MEMBERS` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vaka-wheels-") as tmp:
        sources = []
        for member in UNIT_MEMBERS:
            copy = Path(tmp) / member
            shutil.copytree(
                REPO / member,
                copy,
                ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
            )
            sources.append(str(copy))
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(out),
                *sources,
            ],
            check=True,
        )
    return sorted(out.glob("vaka_*.whl"))


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m vaka.devstack.wheels OUT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vaka.devstack.wheels OUT", file=sys.stderr)
        return 2
    for wheel in build_unit_wheels(Path(args[0])):
        print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
