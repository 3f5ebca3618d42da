"""The default logger: Weights & Biases, offline unless the user has configured W&B.

Offline runs are written under ``<run dir>/wandb/`` and can be uploaded later with
``wandb sync <run dir>/wandb/offline-run-*`` (see the README), which is what clusters
without internet access need. A matrix cell (`lightning_tagging.matrix`) describes its run
with a `WandbRun`: group = matrix, tags = ``axis=value``, id = cell id with ``resume="allow"``,
so a requeued or rerun cell continues the same run (offline, each attempt is one
``offline-run-*-<id>`` folder; ``wandb sync`` uploads them in order into that one run).
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger

DEFAULT_PROJECT = "lightning_tagging"


@dataclass
class WandbRun:
    """Who a run is in W&B: what a matrix cell adds to the default logger.

    Attributes:
        id: the W&B run id (a matrix cell's id); with ``resume="allow"`` a rerun continues it.
        name: display name.
        project: None: ``$WANDB_PROJECT``, else `DEFAULT_PROJECT`.
        group: runs shown together (the matrix name).
        job_type: what kind of job this is ("train" for a matrix cell).
        tags: e.g. ``["compression=log_eps", "seed=0"]``.
        config: extra config logged next to the resolved one (a cell's axes).
    """

    id: str | None = None
    name: str | None = None
    project: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def wandb_is_configured() -> bool:
    """True when the user chose a W&B mode or has credentials (env var or `wandb login`'s netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_path).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def project_name(configured: str | None = None) -> str:
    """``$WANDB_PROJECT`` wins (one switch for every run), then the matrix's choice, then the default."""
    return os.environ.get("WANDB_PROJECT") or configured or DEFAULT_PROJECT


def default_wandb_logger(run_dir: str | os.PathLike[str], run: WandbRun | None = None) -> WandbLogger:
    """A W&B logger that writes into ``run_dir``; offline when W&B is not configured.

    Nothing is sent or started here: the W&B run begins when something is first logged, and
    only on rank zero (Lightning's logger is rank-zero-only).
    """
    run = run or WandbRun()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if run.id is not None:
        # "allow": continue the run if it exists (a requeued cell), create it otherwise.
        extra.update(id=run.id, resume="allow")
    for key in ("group", "job_type"):
        if getattr(run, key):
            extra[key] = getattr(run, key)
    if run.tags:
        extra["tags"] = list(run.tags)
    return WandbLogger(
        project=project_name(run.project),
        name=run.name or Path(run_dir).name,
        save_dir=str(run_dir),
        offline=not wandb_is_configured(),
        log_model=False,
        **extra,
    )
