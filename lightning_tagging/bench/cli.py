"""`lt bench model | fit | data`: argument parsing and dispatch."""

from __future__ import annotations

import argparse

from lightning_tagging.bench import model as bench_model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lt bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench_model.add_arguments(commands.add_parser("model", help="model-only training/inference throughput"))
    args = parser.parse_args(argv)
    if args.command == "model":
        return bench_model.main(args)
    raise AssertionError(args.command)
