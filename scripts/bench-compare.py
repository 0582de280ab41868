#!/usr/bin/env python3
"""Two `edge-assistant bench --json` files side by side, as a Markdown table.

    scripts/bench-compare.py before.json after.json [--all]

Figures that are seconds depend on the machine's load (`machine.load_avg_*` is printed first);
counts, accuracies and ratios measured within one run are the ones to compare across runs.
By default only the headline figures are shown (medians, ratios, counts, accuracies), not each
figure's min/max or the text fields."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

SKIP_SUFFIXES = ("_min", "_max", ".limit", ".what")
SKIP_PREFIXES = ("machine.", "bench.", "models.")


def load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def shown(key: str, value, show_all: bool) -> bool:
    if show_all:
        return True
    if key.startswith(SKIP_PREFIXES) or key.endswith(SKIP_SUFFIXES):
        return False
    return isinstance(value, (int, float, str)) and not isinstance(value, bool) or key.startswith("targets.")


def cell(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}"
    return "" if value is None else str(value)[:40]


def change(before, after) -> str:
    if before is None or after is None:
        return "only after" if before is None else "only before"
    if isinstance(before, bool) or isinstance(after, bool):
        return ""
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before:
        if math.isnan(before) or math.isnan(after):
            return ""
        return f"{after / before:.2f}x"
    return "" if before == after else "changed"


def main(argv: list[str]) -> int:
    paths = [arg for arg in argv if not arg.startswith("--")]
    if len(paths) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before, after = load(paths[0]), load(paths[1])
    show_all = "--all" in argv
    print(f"load at start: {before.get('machine.load_avg_start')} -> {after.get('machine.load_avg_start')}; "
          f"runs: {before.get('bench.runs')} -> {after.get('bench.runs')}\n")
    print("| figure | before | after | after/before |")
    print("| --- | --- | --- | --- |")
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if not shown(key, a if a is not None else b, show_all):
            continue
        if isinstance(a if a is not None else b, str) and not key.startswith("targets.") and not show_all:
            continue
        print(f"| {key} | {cell(a)} | {cell(b)} | {change(a, b)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
