"""`lt weights import musicnn [--model MTT_musicnn|MSD_musicnn|MTT_vgg|MSD_vgg] [--out DIR] [--wheel PATH]`.

Converts a checkpoint published in the ``musicnn`` package (0.1.0 on PyPI) into a TaggingModule
checkpoint ``<out>/musicnn-0.1.0-<model>.ckpt`` (LogMel log_c + Musicnn or VGG, musicnn's tag
vocabulary), usable with ``lt tag --checkpoint``, ``TaggingModule.load_from_checkpoint`` and
``lt test --ckpt_path``. The package's files come from ``--wheel`` (a wheel or an unpacked
package folder), else an installed ``musicnn`` package, else ``pip download`` into the cache
(``$LT_CACHE_DIR`` or ``~/.cache/lightning_tagging``). ``--out`` defaults to ``<cache>/weights``,
where ``lt tag --weights musicnn:<model>`` looks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_tagging.weights.musicnn_source import SHA256


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lt weights", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{import}")
    importer = commands.add_parser("import", help="convert published weights into a TaggingModule checkpoint")
    importer.add_argument("package", choices=["musicnn"], help="the package whose weights to import")
    importer.add_argument("--model", choices=list(SHA256), default="MTT_musicnn", help="default MTT_musicnn")
    importer.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/weights)")
    importer.add_argument("--wheel", type=Path, default=None, help="musicnn 0.1.0 wheel or unpacked package folder")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from lightning_tagging.weights.convert import import_musicnn

    path = import_musicnn(args.model, out_dir=args.out, wheel=args.wheel)
    print(path)
    return 0
