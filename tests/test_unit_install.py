"""The unit installs vaka-agent alone: a fresh venv gets the agent, never central's code.

The wheels are built from this checkout exactly as the image recipe builds them
(:mod:`vaka.devstack.wheels`); pip resolves every other dependency from vaka-agent's own
declarations, so a missing declaration fails ``import vaka.agent.app`` here.
"""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from vaka.devstack.wheels import UNIT_MEMBERS, build_unit_wheels

pytestmark = pytest.mark.timeout(900)


def run(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    # From an empty directory: the checkout itself must not be on the path.
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=120, cwd=python.parent
    )


def test_vaka_agent_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    wheels = build_unit_wheels(tmp_path / "wheels")
    assert sorted(w.name.split("-")[0] for w in wheels) == sorted(f"vaka_{m}" for m in UNIT_MEMBERS)
    env_dir = tmp_path / "unit-venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # pip of the development venv installs into the fresh one (no network needed for pip itself).
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            "--find-links",
            str(tmp_path / "wheels"),
            "vaka-agent",
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    agent = run(python, "import vaka.agent.app, vaka.agent.cli; print('ok')")
    assert agent.returncode == 0 and agent.stdout.strip() == "ok", agent.stderr[-2000:]
    for module in (
        "vaka.central",
        "vaka.staff",
        "vaka.demo",
        "vaka.devstack",
        "sqlalchemy",
        "aiohttp",
        "argon2",
        "pyotp",
        "tomli_w",
    ):
        absent = run(python, f"import {module}")
        assert absent.returncode != 0, f"{module} is importable on the unit"
        assert "ModuleNotFoundError" in absent.stderr, absent.stderr[-500:]
    listed = run(
        python,
        "import importlib.metadata as m; print(sorted("
        "d.metadata['Name'] for d in m.distributions() if d.metadata['Name']"
        ".startswith('vaka')))",
    )
    assert listed.stdout.strip() == str(sorted(f"vaka-{m}" for m in UNIT_MEMBERS)), listed.stdout
