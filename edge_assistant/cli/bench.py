"""`edge-assistant bench`: the options checked, the sections run, the report written."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .common import EXIT_FAILURE, CliError, load_config


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench

    config = load_config(args)
    if args.model is not None:
        if not args.model.strip():
            raise CliError("--model: the model is empty")
        # As llm.model: a registry name, a GGUF path, or "embedded".
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=args.model.strip()))
    sections = bench.SECTIONS
    if args.only is not None:
        sections = tuple(dict.fromkeys(name.strip() for name in args.only.split(",") if name.strip()))
        unknown = [name for name in sections if name not in bench.SECTIONS]
        if unknown or not sections:
            raise CliError(f"--only: unknown section {', '.join(unknown) or '(none given)'} "
                           f"(known: {','.join(bench.SECTIONS)})")
    if args.runs is not None and args.runs < 1:
        raise CliError(f"--runs: must be at least 1, got {args.runs}")
    if args.question is not None and not args.question.strip():
        raise CliError("--question: the question is empty")
    if args.plot:
        if "e2e" not in sections:
            raise CliError("--plot draws the turn the e2e section measures: add e2e to --only")
        try:
            bench.check_plotting()
        except bench.BenchError as error:
            raise CliError(str(error)) from None
    options = bench.BenchOptions(
        sections=sections,
        runs=args.runs or (bench.QUICK_RUNS if args.quick else bench.DEFAULT_RUNS),
        quick=args.quick,
        question=args.question or bench.DEFAULT_QUESTION,
        config_path=args.config,
    )
    report = bench.run(config, options, progress=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    print(bench.format_table(report))
    try:
        if args.json:
            bench.write_json(report, args.json)
        if args.plot:
            bench.write_plot(report, args.plot)
    except bench.BenchError as error:
        raise CliError(str(error)) from None
    return EXIT_FAILURE if report.errors else 0
