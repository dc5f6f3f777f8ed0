"""Fleet ingest benchmark: N simulated units -> Mosquitto (TLS, client certificates) -> central.

The entry point only: the benchmark lives in the package :mod:`bench.fleetbench`, whose docstring
says what it runs and measures. ``python -m bench.fleet --quick`` checks that it works,
``python -m bench.fleet`` runs 20 000 units at a 30 s interval, ``--max-rate`` steps the offered
rate up until something saturates. ``python bench/fleet.py ...`` works the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python bench/fleet.py): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleetbench.main import main

if __name__ == "__main__":
    sys.exit(main())
