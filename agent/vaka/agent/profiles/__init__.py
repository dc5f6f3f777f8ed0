"""One composition per unit profile: what a ``nightcam`` and a ``tv`` unit are made of.

- :mod:`~vaka.agent.profiles.backends`: the hardware factory (real or fake, by ``--simulate``)
  and the TV screen's mode;
- :mod:`~vaka.agent.profiles.common`: the parts every unit has (broker link, health, signed
  configuration, lifecycle, hotplug and shutter events) and :class:`~.common.Unit`, the result;
- :mod:`~vaka.agent.profiles.nightcam` and :mod:`~vaka.agent.profiles.tv`: each builds its
  parts, hands them their dependencies in constructors, and lists them in the order
  :class:`~vaka.agent.runner.Runner` starts them.
"""
