"""`lt bench model | fit | data | suite | estimate | frontend`: argument parsing and dispatch."""

from __future__ import annotations

import argparse

from lightning_tagging.bench import data as bench_data
from lightning_tagging.bench import estimate as bench_estimate
from lightning_tagging.bench import fit as bench_fit
from lightning_tagging.bench import frontend as bench_frontend
from lightning_tagging.bench import model as bench_model
from lightning_tagging.bench import suite as bench_suite


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lt bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench_model.add_arguments(commands.add_parser("model", help="model-only training/inference throughput"))
    bench_fit.add_arguments(commands.add_parser(
        "fit", help="end-to-end training throughput from shards; other arguments go to `lt fit` (e.g. --config)"))
    bench_data.add_arguments(commands.add_parser("data", help="training-stream decode-and-crop throughput"))
    bench_suite.add_arguments(commands.add_parser(
        "suite", help="every model and fit row of the performance tables, in one command (one GPU)"))
    bench_estimate.add_arguments(commands.add_parser(
        "estimate", help="FLOPs and peak memory of a training step, from fake tensors (no device needed)"))
    bench_frontend.add_arguments(commands.add_parser(
        "frontend", help="musicnn's front-end alone: conv implementations and Triton tile choices, timed"))
    args, rest = parser.parse_known_args(argv)
    if args.command == "fit":
        return bench_fit.main(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "data":
        return bench_data.main(args)
    if args.command == "suite":
        return bench_suite.main(args)
    if args.command == "estimate":
        return bench_estimate.main(args)
    if args.command == "frontend":
        return bench_frontend.main(args)
    return bench_model.main(args)
