"""TV unit benchmark: a call to a sleeping unit until the caller's picture is on the TV screen,
and the unit's CPU and RSS during a two-way 640x480 call.

The entry point only: the benchmark lives in the package :mod:`bench.tvbench`, whose docstring
says what it runs and measures (``docs/benchmarks.md``, "TV unit: call to a sleeping unit").
``python bench/tv_call.py --quick`` checks that it works; ``python bench/tv_call.py`` is the
full run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python bench/tv_call.py): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tvbench.main import main

if __name__ == "__main__":
    sys.exit(main())
