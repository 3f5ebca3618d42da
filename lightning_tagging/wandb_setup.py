"""The default logger: Weights & Biases, offline unless the user has configured W&B.

Offline runs are written under ``<run dir>/wandb/`` and can be uploaded later with
``wandb sync <run dir>/wandb/offline-run-*`` (see the README), which is what clusters
without internet access need.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger

DEFAULT_PROJECT = "lightning_tagging"


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


def default_wandb_logger(run_dir: str | os.PathLike[str], name: str | None = None) -> WandbLogger:
    """A W&B logger that writes into ``run_dir``; offline when W&B is not configured."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
        name=name or Path(run_dir).name,
        save_dir=str(run_dir),
        offline=not wandb_is_configured(),
        log_model=False,
    )
