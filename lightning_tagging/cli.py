"""`lt`: the command-line entry point.

    lt fit | validate | test  --config experiments/X.yaml   LightningCLI subcommands
    lt run --config experiments/X.yaml                      fit, then test the best checkpoint
    lt models                                               backbones, parameter counts, input lengths
    lt data build <source> ... | lt data info DIR           shards (lightning_tagging/data/cli.py)
    lt weights import musicnn [--model MTT_musicnn]         published weights (lightning_tagging/weights/)
    lt tag FILE... --weights musicnn:MTT_musicnn            tag audio files with a trained model
    lt bench model | fit | data | suite                     throughput and memory (lightning_tagging/bench/)
    lt matrix list | run | submit M                         an experiment matrix, here or on Slurm (matrix/)
    lt report M                                             tables and figures of a matrix's results (report/)

Each command lives in its own module and is imported only when used, so `lt models` does
not pay for W&B or webdataset imports. Mistakes a user can fix (`UserError`, bad paths,
unknown names) print one line, not a traceback; set LT_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from lightning_tagging.errors import UserError

USAGE = __doc__.split("\n\n")[1]

# command → "module:function"; the function takes the remaining argv and returns an exit code.
COMMANDS = {
    "fit": "lightning_tagging.training_cli:main",
    "validate": "lightning_tagging.training_cli:main",
    "test": "lightning_tagging.training_cli:main",
    "run": "lightning_tagging.training_cli:main",
    "models": "lightning_tagging.models.table:main",
    "data": "lightning_tagging.data.cli:main",
    "weights": "lightning_tagging.weights.cli:main",
    "tag": "lightning_tagging.tag_cli:main",
    "bench": "lightning_tagging.bench.cli:main",
    "matrix": "lightning_tagging.matrix.cli:main",
    "report": "lightning_tagging.report.cli:main",
}
# Subcommands that get their own name as the first argument (LightningCLI needs it).
PASS_COMMAND_NAME = {"fit", "validate", "test", "run"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise UserError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
        module_name, function_name = COMMANDS[command].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        return function([command, *rest] if command in PASS_COMMAND_NAME else rest)
    except (UserError, FileNotFoundError) as error:
        if os.environ.get("LT_DEBUG"):
            raise
        print(f"lt {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
