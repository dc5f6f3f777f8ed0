"""Fleet ingest benchmark: N simulated units -> Mosquitto (TLS, client certificates) -> central.

Everything runs on this machine, on loopback, from a private temporary directory:

* a real Mosquitto with the production configuration (TLS, one client certificate per unit,
  pattern ACL), started by this process on a free port;
* ``--centrals`` real :class:`~vaka.central.service.CentralService` instances, each in its own
  process (``multiprocessing`` spawn) so that their CPU time is measured on its own, sharing the
  health subscription and one database: a SQLite file, or with ``--database postgres`` a
  throw-away PostgreSQL cluster made like the tests' (``--centrals 1,2 --database postgres``
  runs everything once with one and once with two instances and prints both);
* ``--workers`` load-generator processes. Each drives thousands of paho-mqtt clients from one
  ``selectors`` loop (no thread per client): each unit has its own certificate and its own MQTT 5
  TLS connection, a retained will, publishes a retained birth, subscribes to its inbound channels
  like the agent does, and publishes a :class:`~vaka.protocol.messages.HealthMessage` every
  ``--interval`` seconds with a random phase;
* at the end, one real ``vaka-agent --simulate`` process against the same broker, to measure an
  agent's idle CPU and RSS.

The figures (ramp time, sustained ingest rate, publish-to-commit latency, refusals, CPU and RSS of
broker, central and load generator) are printed as one JSON object plus one summary line. This is a
benchmark: it never passes or fails. Run ``python -m bench.fleet --quick`` to check that it works,
``python -m bench.fleet`` for 20 000 units at a 30 s interval, ``--max-rate`` to step the offered
rate up until something saturates.
"""
