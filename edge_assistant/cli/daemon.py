"""The commands on the daemon: `run`, `doctor`, `status`, `reload` and `mqtt unregister`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from .. import config as config_module
from ..config import Config, ConfigError
from .common import EXIT_FAILURE, EXIT_NOT_ALLOWED, EXIT_NOT_RUNNING, CliError, load_config

log = logging.getLogger("edge_assistant")


def cmd_run(args: argparse.Namespace) -> int:
    from ..service import RunOptions, run_service

    config = config_module.load(args.config)  # fail fast, with the key, before loading models
    if args.log_level is None:
        logging.getLogger().setLevel(config.service.log_level.upper())
    options = RunOptions(
        input_wav=Path(args.input) if args.input else None,
        output_wav=Path(args.output) if args.output else None,
    )
    return run_service(args.config, options)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import run_checks

    findings = run_checks(args.config)
    for finding in findings:
        print(finding.line())
    failed = sum(not finding.ok for finding in findings)
    print(f"{failed} problem(s) found" if failed else "all checks passed")
    return EXIT_FAILURE if failed else 0


def _socket_config(args: argparse.Namespace) -> Config:
    """The config, for finding the status socket (and the broker): --socket wins, and a config
    that no longer loads (the edit a reload is about to report) leaves the defaults."""
    try:
        config = load_config(args)
    except ConfigError as error:
        # A user outside the group edge-assistant may not read the system config either: the
        # socket then says in one line what to do, without this line before it.
        path = getattr(args, "config", None) or next(
            (p for p in config_module.DEFAULT_CONFIG_PATHS if os.path.isfile(p)), None)
        log.log(logging.DEBUG if path is not None and _may_not_read(path) else logging.WARNING,
                "%s; looking for the service where it runs by default", error)
        config = Config()
    if args.socket:
        config = dataclasses.replace(config, service=dataclasses.replace(config.service, status_socket=args.socket))
    return config


def _may_not_read(path: str | Path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def cmd_status(args: argparse.Namespace) -> int:
    from .. import status
    from ..health import format_report

    config = _socket_config(args)
    problems = []
    report = None
    if not args.mqtt:
        try:
            report = status.ask(config)
        except status.NotAllowed as error:
            print(f"edge-assistant: {error}", file=sys.stderr)
            return EXIT_NOT_ALLOWED
        except status.ServiceUnreachable as error:
            problems.append(str(error))
    if report is None and config.mqtt.enabled and not args.socket:
        try:
            report = _status_from_broker(config)
        except Exception as error:  # MqttError, ConfigError: said, then the exit status
            problems.append(str(error))
    if report is None or not report.get("online", True):
        for problem in problems:
            print(f"edge-assistant: {problem}", file=sys.stderr)
        if report is not None:
            print(f"{report['device']}: offline (availability on the broker {report['broker']})")
        return EXIT_NOT_RUNNING
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print("\n".join(format_report(report)))
        if "broker" in report:
            print(f"(from the retained topics on the broker {report['broker']}"
                  + ("; it holds no health: a version without it?)" if "parts" not in report else ")"))
    return EXIT_FAILURE if report.get("problem") else 0


def _status_from_broker(config: Config) -> dict:
    """The status a running service leaves on the broker: availability, state, health."""
    from ..mqtt import Topics, read_retained

    topics = Topics.for_config(config.mqtt, config.device_id())
    retained = read_retained(config.mqtt, config.device_id(), [topics.availability, topics.state, topics.health])
    health = json.loads(retained.get(topics.health) or b"{}")
    return {"device": config.device_id(), "state": retained.get(topics.state, b"unknown").decode(),
            "online": retained.get(topics.availability) == b"online",
            "broker": f"{config.mqtt.host}:{config.mqtt.port}", **health}


def cmd_reload(args: argparse.Namespace) -> int:
    from .. import status

    config = _socket_config(args)
    try:
        outcome = status.ask(config, "reload", timeout=args.timeout)
    except status.ServiceUnreachable as error:
        raise CliError(str(error)) from None
    except TimeoutError:
        raise CliError(f"no outcome within {args.timeout:g} s (--timeout); the reload may still be under way") from None
    if not outcome.get("ok"):
        raise CliError(f"reload failed: {outcome.get('error')}; the service goes on with the previous config")
    print("reloaded")
    return 0


def cmd_mqtt_unregister(args: argparse.Namespace) -> int:
    from .. import mqtt

    config = load_config(args)
    topics = mqtt.unregister(config.mqtt, config.device_id())
    for topic in topics:
        print(topic)
    return 0
