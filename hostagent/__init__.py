"""hostagent: run the DeepFlow agent as a non-root service, and take it back out cleanly."""

__version__ = "0.1.0"
