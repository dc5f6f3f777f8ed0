"""Hardware behind small interfaces: per boundary a base class, a real and a fake implementation.

The package knows nothing of the network or of calls. Every device is a
:class:`~vaka.agent.hw.base.StateSource`: an explicit state machine whose changes can be subscribed
to and whose time-stamped history tests assert on.
"""
