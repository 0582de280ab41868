"""`edge-assistant home`: the devices learnt from the broker."""

from __future__ import annotations

import argparse
import json
import sys

from .common import CliError, home_client_id, load_config


def cmd_home(args: argparse.Namespace) -> int:
    import asyncio

    from ..home.assistant import HomeControl

    config = load_config(args)
    if not config.mqtt.enabled:
        raise CliError("the home is reached over MQTT, and mqtt.enabled is false")
    if not 0 < args.wait <= 60:
        raise CliError(f"--wait: must be between 0 and 60 seconds, got {args.wait}")
    control = HomeControl(config, client_id=home_client_id(config, "home-cli"))

    async def collect() -> bool:
        try:
            return await control.start(intents=False, settle_s=args.wait)
        finally:
            await control.aclose()

    settled = asyncio.run(collect())
    if not control.connection.connects:
        raise CliError(f"cannot reach the MQTT broker {config.mqtt.host}:{config.mqtt.port}")
    rows = control.snapshot()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        exposed = ("yes, with a spoken yes" if row["needs_confirmation"] else "yes") if row["exposed"] else "no"
        available = {True: "online", False: "offline", None: "-"}[row["available"]]
        print(f"{row['entity_id']}  \"{row['name']}\"  area={row['area'] or '-'}  {row['domain']}"
              f"  exposed={exposed}  state={row['state'].get('state', 'unknown')}  {available}")
        if row["read_only_reason"]:
            print(f"    read-only: {row['read_only_reason']}")
        for key, problem in row.get("template_problems", {}).items():
            print(f"    {key} not used: {problem}")
    for key, reason in control.home.rejected.items():
        print(f"not used: {key}: {reason}")
    exposed_count = sum(row["exposed"] for row in rows)
    print(f"# {len(rows)} entities, {exposed_count} exposed"
          + ("" if settled else f"; still arriving after {args.wait:g} s"), file=sys.stderr)
    return 0
