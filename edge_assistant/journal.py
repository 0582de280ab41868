"""Log lines as the systemd journal wants them: under systemd, every line starts with the
sd-daemon(3) priority of its record (``<4>`` for a warning), so `journalctl -p warning` shows
the warnings, errors and tracebacks; elsewhere the lines stay plain.

The journal stores each line of a stream as an entry of its own and reads the prefix of each
line, so every line of a record (a traceback's too) carries it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Mapping

LINE_FORMAT = "%(levelname)s %(name)s: %(message)s"

# sd-daemon(3): SD_DEBUG 7, SD_INFO 6, SD_NOTICE 5, SD_WARNING 4, SD_ERR 3, SD_CRIT 2.
DEBUG, INFO, WARNING, ERR, CRIT = 7, 6, 4, 3, 2


def priority(levelno: int) -> int:
    """The journal priority of a logging level (a custom level takes the one below it)."""
    if levelno >= logging.CRITICAL:
        return CRIT
    if levelno >= logging.ERROR:
        return ERR
    if levelno >= logging.WARNING:
        return WARNING
    if levelno >= logging.INFO:
        return INFO
    return DEBUG


def prefixed(text: str, journal_priority: int) -> str:
    """`text` with the priority at the start of each of its lines."""
    return "\n".join(f"<{journal_priority}>{line}" for line in text.split("\n"))


def connected(stream: IO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` (stderr) goes to the journal: systemd sets $JOURNAL_STREAM to the
    device and inode of the stream it connects (systemd.exec(5)). A service whose output was
    sent elsewhere (StandardError=file:..., or a shell's redirection in ExecStart=) still has
    the variable, but not that stream, and gets plain lines."""
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stream.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class JournalFormatter(logging.Formatter):
    """The usual line (traceback included), each of its lines led by the record's priority."""

    def format(self, record: logging.LogRecord) -> str:
        return prefixed(super().format(record).rstrip("\n"), priority(record.levelno))


def setup(level: int, stream: IO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Logging to `stream` (stderr) at `level`, in the journal's form when it goes to the journal;
    there, uncaught exceptions and Python's warnings are logged too, so they carry a priority.
    Returns whether the output goes to the journal."""
    stream = sys.stderr if stream is None else stream
    journal = connected(stream, environ)
    # As logging.basicConfig: handlers someone set up before (a test's) are left alone.
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(_own_stream(stream))
        handler.setFormatter(JournalFormatter(LINE_FORMAT) if journal else logging.Formatter(LINE_FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
    logging.captureWarnings(True)
    if journal:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    return journal


def _own_stream(stream: IO) -> IO:
    """A stream on a descriptor of its own for the same file as `stream`. sounddevice points the
    process's descriptor 2 at /dev/null while PortAudio starts (to hide ALSA's messages), which
    `rescan_devices()` does on every retry of a missing device: a line another thread logged
    to descriptor 2 meanwhile was lost, "speaker missing" among them."""
    try:
        descriptor = os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (a test's)
        return stream
    return os.fdopen(descriptor, "w", encoding=getattr(stream, "encoding", None) or "utf-8",
                     errors="backslashreplace")


def error_line(text: str, stream: IO | None = None) -> str:
    """A line a command prints itself on stderr for an error: with the error priority when
    stderr goes to the journal."""
    return prefixed(text, ERR) if connected(stream) else text


_log = logging.getLogger("edge_assistant")


def _log_uncaught(kind, value, traceback) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    _log.critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _log.error("uncaught exception in thread %s", name,
               exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
