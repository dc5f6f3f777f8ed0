"""Night-check call set-up benchmark: the whole Vaka path next to a bare aiortc pair.

Everything runs on this machine, on loopback (all media on 127.0.0.1), from a private temporary
directory, in one run so that the ratios hold on a noisy machine:

1. **Whole path** — a staff client (:class:`~vaka.staff.client.StaffClient`) dials a night check
   through a real :class:`~vaka.central.service.CentralService` (in this process) and a real
   Mosquitto (TLS, client certificates, ACL) to a real ``vaka-agent --simulate`` in its own
   process; timed from the dial request to the first decoded frame, split into offer gathering,
   ticket + signalling, ICE + DTLS and first keyframe (:class:`~vaka.staff.client.CallTimings`).
2. **Bare pair** — two ``RTCPeerConnection`` in this process exchanging SDP directly (sender:
   :class:`~vaka.agent.media.track.CameraTrack` over a :class:`SyntheticSource`), timed from
   ``createOffer`` to the first decoded frame. Whole-path and bare calls alternate one by one.
3. **Dead STUN server** — both again with a STUN server on 127.0.0.1 that never answers (a bound
   UDP socket nobody reads): the bare pair with aioice's own 5 s gathering wait (emulated with
   ``configure_ice(["127.0.0.1"], 5.0)``: :func:`vaka.rtc.ice.reset_ice` would also drop the
   loopback-only host addresses) and with ``--gather-timeout``; the whole path with that bound on
   both sides and with the shipped default bound (1 s).
4. **Streaming CPU and RSS** — the agent process during a call at 640x480@15 and 1280x720@15
   (restarted for the other size) next to a bare aiortc sender in its own process (this file
   with ``--bare-sender``) streaming the same synthetic source, same bitrate cap, same receiver.

It prints figures, never pass or fail: one JSON object on stdout, readable summary lines and
progress on stderr. ``python bench/call_setup.py --quick`` checks that it works in about a
minute; ``python bench/call_setup.py`` is the full run (20 calls each, 12 s streaming windows).
"""
