"""Built-in models: one module per model, each following the contract of :mod:`opt_protocols.model`."""
