"""twinstream: streaming similarity matching with Siamese networks."""

__version__ = "0.1.0"
