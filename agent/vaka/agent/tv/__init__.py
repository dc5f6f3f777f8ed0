"""The TV unit: what happens on the citizen's TV — ringing, auto-answer, the call on screen, the
night-staff button, messages — around the call machinery every unit shares."""
