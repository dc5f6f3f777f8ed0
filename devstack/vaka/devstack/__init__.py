"""The one local stack: PKI, broker, central and simulated units for the demo, tests and benches."""
