"""`edge-assistant models`: list, pull, locate and remove models."""

from __future__ import annotations

import argparse
import json

from .. import models
from .common import CliError, load_config


def cmd_models_list(args: argparse.Namespace) -> int:
    config = load_config(args)
    rows = models.listing(config.state_dir())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = "*" if row["pulled"] else " "
        print(f"{mark} {row['name']:<28} {row['kind']:<6} {row['description']}")
    print("(* pulled; the embedded defaults need no pull)")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    config = load_config(args)
    for name in args.names:
        path = models.pull(name, config.state_dir(), progress=not args.quiet)
        print(path)
    return 0


def cmd_models_path(args: argparse.Namespace) -> int:
    config = load_config(args)
    state_dir = config.state_dir()
    if args.name == models.EMBEDDED:
        print(models.resolve_llm("", state_dir))
        return 0
    found = models.path(args.name, state_dir)
    if found is None:
        raise CliError(f"{args.name} is not pulled; run: edge-assistant models pull {args.name}")
    print(found)
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    config = load_config(args)
    if not models.remove(args.name, config.state_dir()):
        raise CliError(f"{args.name} is not pulled")
    return 0
