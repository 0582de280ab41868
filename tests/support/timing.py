"""Timing slack for tests on slow or loaded machines."""

from __future__ import annotations

import os


def slack(seconds: float) -> float:
    """`seconds` scaled by EDGE_ASSISTANT_TEST_TIME_SCALE (default 1), for timeouts and bounds."""
    return seconds * float(os.environ.get("EDGE_ASSISTANT_TEST_TIME_SCALE", "1"))
