"""Night-check call set-up benchmark: the whole Vaka path next to a bare aiortc pair.

The entry point only: the benchmark lives in the package :mod:`bench.callbench`, whose docstring
says what it runs and measures (``docs/benchmarks.md``, "Night-check call set-up").
``python bench/call_setup.py --quick`` checks that it works in about a minute;
``python bench/call_setup.py`` is the full run. The benchmark also starts this file with
``--bare-sender`` as its bare aiortc sender child.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python bench/call_setup.py): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callbench.main import main

if __name__ == "__main__":
    sys.exit(main())
