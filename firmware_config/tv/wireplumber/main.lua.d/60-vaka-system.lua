-- The TV unit runs WirePlumber as a system service for the agent's user (vaka-wireplumber.service),
-- with no desktop session around it: no session D-Bus, no portals, no other program competing
-- for the sound card. Without these two, WirePlumber 0.4 (Debian 12) stops at start-up with
-- "Cannot autolaunch D-Bus without X11 $DISPLAY".
alsa_monitor.properties["alsa.reserve"] = false
default_access.properties["enable-flatpak-portal"] = false
