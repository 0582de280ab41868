"""Hearing: the wake word, the stop word, endpointing, speech to text and the listener that runs them on frames."""
