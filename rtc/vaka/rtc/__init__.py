"""WebRTC helpers shared by the unit's agent and the staff client.

This package depends only on aiortc, aioice, numpy and OpenCV: it imports nothing from
``vaka.agent`` or ``vaka.central`` so that both sides (and the staff client) can use it.

* :mod:`vaka.rtc.ice` — bound ICE gathering and choose the host addresses aioice uses.
* :mod:`vaka.rtc.sdp` — size and syntax checks for SDP, DTLS fingerprints out of it.
* :mod:`vaka.rtc.pattern` — a test pattern that carries a frame counter and capture time.
* :mod:`vaka.rtc.bitrate` — cap aiortc's video encoder bitrate.
"""
