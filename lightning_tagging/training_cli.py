"""`lt fit | validate | test | run`: LightningCLI wired for tagging experiments.

What this adds to a plain LightningCLI:
- the backbone's ``n_tags`` and the module's ``tags`` are linked from the data's
  ``vocab.json``, so no config repeats them;
- every run gets the run-dir callbacks (`callbacks.py`) and, unless the config names a
  logger, a W&B logger that is offline when W&B is not configured;
- ``lt run`` = fit, then test the best checkpoint, in one process; it resumes from
  ``<run dir>/checkpoints/last.ckpt`` when an earlier attempt was interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lightning_tagging.callbacks import FrontendTrajectory, ResultsWriter, RunCheckpoint
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.module import TaggingModule
from lightning_tagging.wandb_setup import default_wandb_logger

DEFAULT_RUN_DIR = "runs/default"


class TaggingCLI(LightningCLI):
    """LightningCLI for `TaggingModule` + `TaggingDataModule` (front-end and backbone in subclass mode)."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            TaggingModule,
            TaggingDataModule,
            args=args,
            run=run,
            trainer_defaults={
                "default_root_dir": DEFAULT_RUN_DIR,
                "callbacks": [RunCheckpoint(), FrontendTrajectory(), ResultsWriter()],
            },
            save_config_kwargs={"overwrite": True},
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_tags", "model.backbone.init_args.n_tags", apply_on="instantiate")
        parser.link_arguments("data.vocab", "model.tags", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_wandb_logger(trainer_config.get("default_root_dir") or DEFAULT_RUN_DIR)
        return super().instantiate_trainer(**kwargs)


def main(argv: list[str]) -> int:
    """`lt fit | validate | test | predict ...` (LightningCLI) and `lt run ...` (fit, then test)."""
    command, rest = argv[0], argv[1:]
    if command != "run":
        TaggingCLI(args=[command, *rest])
        return 0
    results = run_fit_and_test(rest)
    if results is not None:
        print(summary_line(results))
    return 0


def summary_line(results: dict[str, Any]) -> str:
    """The line a user looks for at the end of `lt run`."""
    parts = [
        f"test ROC-AUC {results['roc_auc']:.4f}",
        f"PR-AUC {results['pr_auc']:.4f}",
        f"{results['n_clips']} clips",
        f"{results['n_tags_evaluated']} tags",
    ]
    parts += [f"{name} {value:.4g}" for name, value in results.get("frontend", {}).items()]
    return "RESULT " + " | ".join(parts)


def run_fit_and_test(args: list[str]) -> dict[str, Any] | None:
    """`lt run`: fit (resuming from last.ckpt if present), then test the best checkpoint.

    Returns the test results (also written to ``<run dir>/results.json``).
    """
    cli = TaggingCLI(args=args, run=False)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
    return model.test_results
