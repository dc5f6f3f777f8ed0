"""Starting, asking and stopping every process of the benchmark: broker, central, load workers."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from vaka.central.settings.passwords import PasswordHashing
from vaka.devstack.stack import LocalStack
from vaka.devstack.units import AgentProcess

from .bare import bare_main
from .central_proc import central_main
from .common import BARE_IDENTITY, HOST, log, percentiles
from .loadgen import worker_main
from .loadplan import WorkerPlan
from .measure import Proc


class BenchProcesses:
    """Sets everything up, talks to the child processes, and tears it all down."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="vaka-fleet-"))
        self.stack: LocalStack | None = None
        self.centrals: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.central_ps: list[Proc] = []
        self.workers: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.central_urls: list[str] = []
        self.agent: AgentProcess | None = None
        #: the real nightcam the night checks dial (see backlog.py)
        self.night_unit: AgentProcess | None = None
        #: the bare subscriber (bare.py): its process and pipe
        self.bare: tuple[mp.process.BaseProcess, Connection] | None = None
        self.bare_ps: list[Proc] = []
        #: the events unit (backlog.EventSource), while it publishes
        self.events: Any = None
        self.result: dict[str, Any] = {}
        self.ctx = mp.get_context("spawn")
        #: the PostgreSQL database's URL (``--database postgres``); ``None``: a SQLite file
        self.database: str | None = None

    # -- plumbing

    def ask_central(self, *request: Any, timeout: float = 30) -> list[Any]:
        """Send a request to every central process and gather the answers."""
        for _, conn in self.centrals:
            conn.send(request)
        answers = []
        for _, conn in self.centrals:
            if not conn.poll(timeout):
                raise TimeoutError(f"central did not answer {request[0]!r} within {timeout} s")
            answers.append(conn.recv())
        return answers

    def central_stats(self) -> dict[str, Any]:
        """Ingest counters summed over the central instances (their own latency figures listed)."""
        answers = self.ask_central("stats")
        out: dict[str, Any] = {
            k: sum(int(a[k]) for a in answers)
            for k in ("accepted", "written", "pending", "refused_total")
        }
        out["health_latency_ms"] = [a["health_latency_ms"] for a in answers]
        # how each instance's health connection gave way to calls being set up
        out["calls_first"] = [a["link"]["calls_first"] for a in answers]
        return out

    def central_window(self) -> dict[str, Any]:
        """Publish-to-commit latency percentiles since the last call, over every instance."""
        return percentiles([v for answer in self.ask_central("window") for v in answer])

    def ask_workers(self, *request: Any, timeout: float = 30) -> list[Any]:
        """Send a request to every worker and gather the answers."""
        for _, conn in self.workers:
            conn.send(request)
        answers = []
        for _, conn in self.workers:
            if not conn.poll(timeout):
                raise TimeoutError(f"a worker did not answer {request[0]!r} within {timeout} s")
            answers.append(conn.recv())
        return answers

    @staticmethod
    def total(answers: list[dict[str, Any]], key: str) -> int:
        """Sum of one counter over the workers."""
        return sum(int(a[key]) for a in answers)

    # -- phases

    def setup(self) -> None:
        """PKI, broker, central, load workers (certificates issued in the workers)."""
        a = self.args
        self.identities = identities = tuple(f"central-{i + 1}" for i in range(a.centrals))
        # As in production: persistent sessions, the CRL checked on every handshake.
        self.stack = stack = LocalStack(
            self.dir,
            host=HOST,
            central_identities=(*identities, BARE_IDENTITY),
            broker_lines=tuple(a.broker_line),
        )
        self.pki = local = stack.pki
        broker = stack.start_broker()
        self.port = port = broker.port
        assert broker.process is not None and broker.process.pid is not None
        self.broker_ps = Proc("broker", psutil.Process(broker.process.pid))

        if a.database == "postgres":
            self.database = stack.start_postgres()  # a throw-away cluster, gone at teardown
            log("centrals share a throw-away PostgreSQL database")
        self.start_centrals(port)
        self.start_bare()

        # Every unit is one socket in the broker: the fleet must fit its RLIMIT_NOFILE.
        broker_limit = self.broker_ps.ps.rlimit(psutil.RLIMIT_NOFILE)[0]
        room = broker_limit - self.broker_ps.ps.num_fds() - a.centrals - 3  # + agent, spare
        self.result["params"]["units_requested"] = a.units
        if a.units > room:
            log(
                f"the broker's RLIMIT_NOFILE is {broker_limit}: it can hold {room} unit "
                f"connections, not {a.units}; running {room} units"
            )
            a.units = room
            self.result["params"]["units"] = room
            self.result["params"]["units_capped_by_broker_nofile"] = broker_limit
        per_worker = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200
        a.workers = max(a.workers, -(-a.units // per_worker))
        self.result["params"]["workers"] = a.workers

        units = [f"u-fleet-{i:05d}" for i in range(a.units)]
        rate = a.ramp_rate
        keepalive = a.keepalive
        for w in range(a.workers):
            mine = tuple(range(w, a.units, a.workers))
            plan = WorkerPlan(
                index=w,
                units=tuple(units[i] for i in mine),
                slots=tuple(i / rate for i in mine),
                port=port,
                pki_root=str(local.root),
                interval_s=a.interval,
                keepalive_s=keepalive,
                seed=a.seed * 1000 + w,
            )
            parent_w, child_w = self.ctx.Pipe()
            proc = self.ctx.Process(target=worker_main, args=(plan, child_w), name=f"loadgen-{w}")
            proc.start()
            self.workers.append((proc, parent_w))
        setup = []
        for _, conn in self.workers:
            if not conn.poll(600):
                raise RuntimeError("a load worker did not issue its certificates within 600 s")
            setup.append(conn.recv()[1])
        self.loadgen_ps = [
            Proc(f"loadgen-{i}", psutil.Process(p.pid))
            for i, (p, _) in enumerate(self.workers)
            if p.pid is not None
        ]
        self.result["setup"] = {"certificates_s": round(max(setup), 1)}
        log(f"setup done: {a.units} unit certificates in {max(setup):.1f} s")

    def start_central(self, identity: str, port: int) -> None:
        """One central instance in its own process; all share one database (a SQLite file, or
        PostgreSQL with ``--database postgres``) and the share group."""
        assert self.stack is not None and port == self.stack.broker.port
        # Central's default keepalive: a loaded event loop must not cost it its session.
        # ... and the product's password cost: the bench measures central's memory and log-in.
        config = self.stack.central_config(
            identity,
            keepalive_s=30,
            database=self.database or self.dir / "central.db",
            passwords=PasswordHashing(),
        )
        # The restart phase queues a health backlog for a killed central longer than the health
        # session's default 30 s: here it lives as long as the main one (docs/scaling.md).
        mqtt = config.mqtt.model_copy(
            update={"health_session_expiry_s": config.mqtt.session_expiry_s}
        )
        if self.args.calls_first_s is not None:  # to measure central with health not pausing
            mqtt = mqtt.model_copy(update={"calls_first_s": self.args.calls_first_s})
        config = config.model_copy(update={"mqtt": mqtt})
        profile = self.args.profile_central
        if profile is not None and identity != "central-1":
            profile = f"{profile}.{identity}"
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=central_main,
            args=(child, config.model_dump_json(), profile),
            name=identity,
        )
        proc.start()
        self.centrals.append((proc, parent))
        deadline = time.monotonic() + 200
        while not parent.poll(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{identity} did not come up (see its traceback above)")
        ready = parent.recv()
        assert ready[0] == "ready" and proc.pid is not None
        self.central_ps.append(Proc(identity, psutil.Process(proc.pid)))
        self.central_urls.append(f"http://{HOST}:{ready[1]}")

    def start_centrals(self, port: int) -> None:
        """Every central instance of the run."""
        for identity in self.identities:
            self.start_central(identity, port)

    def kill_centrals(self) -> None:
        """``kill -9`` every central instance (their sessions stay at the broker)."""
        for proc, _ in self.centrals:
            proc.kill()
            proc.join(10)
        self.centrals, self.central_ps, self.central_urls = [], [], []

    def start_bare(self) -> None:
        """The bare subscriber (bare.py), subscribed before the fleet connects."""
        assert self.stack is not None
        files = self.pki.client(BARE_IDENTITY)
        parent, child = self.ctx.Pipe()
        paths = (str(files.server_ca), str(files.cert), str(files.key))
        proc = self.ctx.Process(
            target=bare_main,
            args=(child, HOST, self.port, paths, BARE_IDENTITY),
            name="bare-subscriber",
        )
        proc.start()
        if not parent.poll(60) or not parent.recv()[1]:
            raise RuntimeError("the bare subscriber did not subscribe")
        assert proc.pid is not None
        self.bare = (proc, parent)
        self.bare_ps = [Proc("bare", psutil.Process(proc.pid))]

    def bare_count(self) -> int:
        """Messages the bare subscriber has received so far."""
        assert self.bare is not None
        self.bare[1].send(("count",))
        return int(self.bare[1].recv()[0])

    def broker_log(self) -> str:
        """What the broker has logged so far."""
        return "" if self.stack is None else self.stack.broker.log()

    def teardown(self) -> None:
        """Stop everything this benchmark started; safe after partial setup."""
        if self.events is not None:
            self.events.stop()
        for agent in (self.agent, self.night_unit):
            if agent is not None:
                agent.stop()
        if self.bare is not None:
            with contextlib.suppress(OSError):
                self.bare[1].send(("stop",))
            self.bare[0].join(10)
            if self.bare[0].is_alive():
                self.bare[0].kill()
        for _proc, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc, _ in self.workers:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for _, conn in self.centrals:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc, _ in self.centrals:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self.stack is not None:
            self.stack.close()
        if self.args.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
