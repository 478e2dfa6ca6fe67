"""Anti-personalization benchmark harness: the core knows contracts, never methods."""

__version__ = "0.1.0"
