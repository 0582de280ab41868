"""Timing slack for tests on a loaded machine: one scale factor widens every allowance."""

import os


def slack(seconds: float) -> float:
    return seconds * float(os.environ.get("EDGE_ASSISTANT_TEST_TIME_SCALE", "1"))
