"""TV unit benchmark: a call to a sleeping unit until the caller's picture is on the TV, and the
unit's CPU and memory in a two-way 640x480 call.

What runs: a local PKI, Mosquitto (TLS, client certificates, ACL) and central in the bench
process (the call set-up benchmark's rig, :func:`bench.callbench.stack.running_bench`), and one
``vaka-agent --simulate`` child with the ``tv`` profile (headless screen, synthetic camera
640x480@15, synthetic tone microphone, the fake CEC bus with the TV in standby), so that the
unit's CPU and RSS are its own. A signed configuration bundle tells the unit to answer the
caller's group at once (``countdown_s = 0``): the countdown is left out by construction.

* **Set-up calls** (``--calls``, 10): before each, the unit has put the TV back to standby
  (``[tv] idle_standby_s = 1``; seen in its health, reported every second). ``t0`` is
  ``time.time()`` just before the staff client's ``dial`` (two-way: a 15 frames/s pattern and a
  1000 Hz tone); the unit's ``picture_shown`` call event (``at``: the wall-clock time its first
  remote frame was put on the screen) is read from central's event store; the figure is
  ``at - t0``. Also the staff side's own timings and its first decoded frame. One unmeasured
  call after the unit starts is reported apart.
* **Held call** (``--hold``, 30 s): the unit's CPU (% of one core) and RSS once a second while
  idle and through a two-way call; frames per second received at the staff side (video and
  audio); at the unit, the frame count it logs when the call ends.

``python bench/tv_call.py`` (about a minute), ``--quick`` (3 calls, 8 s hold). Prints one JSON
object on stdout and one readable line on stderr. Figures: docs/benchmarks.md, "TV unit: call
to a sleeping unit".
"""
