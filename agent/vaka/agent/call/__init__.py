"""Call sessions on the unit: ticket check, RTCPeerConnection lifecycle, limits, teardown."""
