"""The demo: broker, central, simulated units and a night check, all on this machine.

It ties every side together, so it lives apart from them: central and the agent never import it.
"""
