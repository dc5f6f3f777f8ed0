-- The TV unit's replacement for WirePlumber's own 90-enable-all.lua (same name, so it is read
-- instead): the sound devices only. The camera is the agent's alone (libcamera or V4L2 directly),
-- so the v4l2 and libcamera monitors are left out and never open it.
load_module("metadata")
default_access.enable()
alsa_monitor.enable()
device_defaults.enable()
stream_defaults.enable()
load_script("intended-roles.lua")
load_script("suspend-node.lua")
