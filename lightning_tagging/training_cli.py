"""`lt fit | validate | test | run`: LightningCLI wired for tagging experiments.

What this adds to a plain LightningCLI:
- the backbone's ``n_tags`` and the module's ``tags`` are linked from the data's
  ``vocab.json``, so no config repeats them;
- every run gets the run-dir callbacks (`callbacks.py`), a progress bar that reads the metrics
  at most once a second (`progress.py`; unless the config disables the bar or brings its own)
  and, unless the config names a logger, a W&B logger that is offline when W&B is not
  configured (with the resolved config logged, and per-tag tables and images at test time,
  `wandb_media.py`);
- ``lt run`` = fit, then test the best checkpoint, in one process; it resumes from the newest
  of ``<run dir>/checkpoints/last.ckpt`` and ``preempted.ckpt`` when an earlier attempt was
  interrupted, taking the same steps an uninterrupted run would (`resume.py`);
- SIGUSR1 checkpoints at the next step and, under Slurm, requeues the job (`preemption.py`);
- a loss that becomes NaN or infinite stops the run with a clear error (`divergence.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pytorch_lightning import Callback, Trainer
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger

from lightning_tagging.callbacks import FrontendTrajectory, ResultsWriter, RunCheckpoint, StepSeed
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.divergence import DivergenceCheck
from lightning_tagging.module import TaggingModule
from lightning_tagging.preemption import PREEMPTED_CHECKPOINT, Preempted, RequeueOnSignal
from lightning_tagging.progress import ThrottledProgressBar
from lightning_tagging.resume import resume_checkpoint
from lightning_tagging.wandb_media import WandbMedia
from lightning_tagging.wandb_setup import WandbRun, default_wandb_logger

DEFAULT_RUN_DIR = "runs/default"
PREEMPTED_EXIT_CODE = 3  # checkpointed on a preemption signal; not finished


class TaggingCLI(LightningCLI):
    """LightningCLI for `TaggingModule` + `TaggingDataModule` (front-end and backbone in subclass mode)."""

    def __init__(self, args: list[str] | None = None, run: bool = True, wandb_run: WandbRun | None = None) -> None:
        self.wandb_run = wandb_run or WandbRun()
        super().__init__(
            TaggingModule,
            TaggingDataModule,
            args=args,
            run=run,
            trainer_defaults={"default_root_dir": DEFAULT_RUN_DIR},  # callbacks: see instantiate_trainer
            save_config_kwargs={"overwrite": True},
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_tags", "model.backbone.init_args.n_tags", apply_on="instantiate")
        parser.link_arguments("data.vocab", "model.tags", apply_on="instantiate")

    @staticmethod
    def run_callbacks() -> list[Callback]:
        """The callbacks every run gets (see `callbacks.py`, `preemption.py`, `wandb_media.py`)."""
        return [RunCheckpoint(), FrontendTrajectory(), ResultsWriter(), StepSeed(), DivergenceCheck(),
                RequeueOnSignal(), WandbMedia()]

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            run_dir = trainer_config.get("default_root_dir") or DEFAULT_RUN_DIR
            kwargs["logger"] = default_wandb_logger(run_dir, self.wandb_run)
        # LightningCLI appends trainer_defaults' callbacks to the config's. The bar is added only where
        # Lightning would add its own: it refuses a bar with enable_progress_bar false, and one of the
        # config's callbacks that is a progress bar wins (Lightning takes one bar only).
        callbacks = self.run_callbacks()
        user_callbacks = trainer_config.get("callbacks") or []
        user_callbacks = user_callbacks if isinstance(user_callbacks, list) else [user_callbacks]
        wants_bar = kwargs.get("enable_progress_bar", trainer_config.get("enable_progress_bar")) is not False
        if wants_bar and not any(isinstance(callback, ProgressBar) for callback in user_callbacks):
            callbacks.append(ThrottledProgressBar())
        self.trainer_defaults["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self._log_config()

    def _log_config(self) -> None:
        """Give W&B the fully resolved config (and a matrix cell's axes); the logger logs on rank zero only."""
        logger = self.trainer.logger
        if not isinstance(logger, WandbLogger):
            return
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        resolved = json.loads(json.dumps(config.as_dict(), default=str))
        logger.log_hyperparams({"config": resolved, **self.wandb_run.config})


def main(argv: list[str]) -> int:
    """`lt fit | validate | test | predict ...` (LightningCLI) and `lt run ...` (fit, then test)."""
    command, rest = argv[0], argv[1:]
    if command != "run":
        TaggingCLI(args=[command, *rest])
        return 0
    try:
        results = run_fit_and_test(rest)
    except Preempted as stop:
        try:
            stop.requeue()
        except RuntimeError as error:  # e.g. a partition that forbids requeues: resubmit by hand
            print(f"lt run: {error}", file=sys.stderr)
        print(f"lt run: {stop}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
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


def run_fit_and_test(args: list[str], wandb_run: WandbRun | None = None) -> dict[str, Any] | None:
    """`lt run`: fit (resuming from the newest checkpoint if any), then test the best checkpoint.

    Returns the test results (also written to ``<run dir>/results.json``).

    Raises:
        Preempted: a preemption signal stopped training after a checkpoint (see preemption.py).
    """
    cli = TaggingCLI(args=args, run=False, wandb_run=wandb_run)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    exit_code = 1
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(trainer.default_root_dir))
        if trainer.is_global_zero:  # superseded by last.ckpt now that training is complete
            (Path(trainer.default_root_dir) / "checkpoints" / PREEMPTED_CHECKPOINT).unlink(missing_ok=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        exit_code = 0
    except Preempted:
        exit_code = 0  # a pause, not a failure: the requeued attempt continues the same W&B run
        raise
    finally:
        finish_wandb_run(trainer, exit_code)
    return model.test_results


def finish_wandb_run(trainer: Trainer, exit_code: int) -> None:
    """End this process's W&B run now (not at interpreter exit): its data is flushed before a requeue,
    and a second run in the same process (tests, notebooks) gets a run of its own."""
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers) and trainer.is_global_zero:
        import wandb

        if wandb.run is not None:
            wandb.run.finish(exit_code=exit_code)
