"""edge-assistant: an offline voice assistant for small devices."""

__version__ = "0.1.0"
