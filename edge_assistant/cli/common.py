"""What every command shares: the config as the command line names it, the exit statuses,
the one-line failure, the question read from the arguments or stdin."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import config as config_module, journal
from ..config import Config

EXIT_FAILURE = 1
# `status`: nothing answers (as `systemctl status` says of a unit that is not running).
EXIT_NOT_RUNNING = 3
# `status`: this user may not ask the service (LSB's "status unknown").
EXIT_NOT_ALLOWED = 4


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def load_config(args: argparse.Namespace) -> Config:
    return config_module.load(getattr(args, "config", None))


def setup_logging(level: str) -> None:
    # Under systemd each line carries its priority, so `journalctl -p warning` finds it.
    journal.setup(getattr(logging, level.upper(), logging.INFO))


def question(args: argparse.Namespace) -> str:
    text = " ".join(args.text) if args.text else ""
    if text == "-" or (not text and not sys.stdin.isatty()):
        raw = sys.stdin.buffer.read()
        text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise CliError("the question is empty")
    return text


def home_client_id(config: Config, purpose: str) -> str:
    """The MQTT client id of a one-off command's home: its own, so a running assistant is not
    disconnected by the broker."""
    from ..broker import client_id

    return client_id(config.mqtt, config.device_id(), f"{purpose}-{os.getpid()}")
