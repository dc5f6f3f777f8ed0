"""System updates: the bundles central serves, roll-outs in stages, and the units' versions."""
