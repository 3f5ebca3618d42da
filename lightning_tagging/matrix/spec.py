"""A matrix file → its cells, each with a stable short id.

    # experiments/matrices/log_compression_mtt.yaml
    name: log_compression_mtt          # optional; default: the file's stem
    configs: [../mtt.yaml]             # LightningCLI configs every cell starts from, in order
    fixed:                             # overrides for every cell (optional)
      trainer.max_epochs: 40
    axes:
      backbone:                        # a named axis: label → the overrides it stands for
        musicnn: {model.backbone: lightning_tagging.models.Musicnn}
        vgg: {model.backbone: lightning_tagging.models.VGG}
      model.frontend.init_args.compression: [log_eps, log_learn]   # a key axis, named "compression"
    seeds: [0, 1, 2]                   # the "seed" axis: seed_everything and data.seed
    exclude: [{backbone: vgg, compression: log_learn}]   # drop cells matching a rule
    include: [{seed: 0}]               # if given, keep only cells matching one of its rules
    wandb: {project: my_project, job_type: train}

Cells are the product of the axes in file order (later axes vary fastest), minus the excluded
ones. A cell's id is a short hash of the matrix name and the cell's overrides: editing other
cells, reordering, or adding values to an axis never changes it, so a cell always finds its
run dir ``<runs>/<matrix>/<id>/``, its checkpoints and its W&B run (whose id is the cell id).
Changing ``configs`` or ``fixed`` does not change ids either: rename the matrix to start over.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_tagging.errors import UserError

SEED_KEYS = ("seed_everything", "data.seed")
ALLOWED_KEYS = {"name", "configs", "fixed", "axes", "seeds", "include", "exclude", "wandb", "description"}


@dataclass(frozen=True)
class Axis:
    """One dimension of the matrix: a name (used in tags and tables) and its labelled values."""

    name: str
    values: tuple[tuple[str, dict[str, Any]], ...]  # (label, {key path: value})


@dataclass(frozen=True)
class Cell:
    """One run of the matrix.

    Attributes:
        index: position in the matrix's cell list.
        id: 8 hex digits, from the matrix name and ``overrides``.
        axes: axis name → label, e.g. ``{"compression": "log_eps", "seed": "0"}``.
        overrides: config key path → value, what this cell sets on top of the matrix's configs.
    """

    index: int
    id: str
    axes: dict[str, str]
    overrides: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{axis}={label}" for axis, label in self.axes.items())


@dataclass
class Matrix:
    """A parsed matrix file."""

    name: str
    path: Path
    configs: list[Path]
    fixed: dict[str, Any]
    axes: list[Axis]
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    wandb: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        """Every cell, in order."""
        cells = []
        for combination in itertools.product(*(axis.values for axis in self.axes)):
            labels = {axis.name: label for axis, (label, _) in zip(self.axes, combination, strict=True)}
            if not self._kept(labels):
                continue
            overrides: dict[str, Any] = {}
            for _, values in combination:
                overrides.update(values)
            cells.append(Cell(len(cells), cell_id(self.name, overrides), labels, overrides))
        return cells

    def _kept(self, labels: dict[str, str]) -> bool:
        if any(rule_matches(rule, labels) for rule in self.exclude):
            return False
        return not self.include or any(rule_matches(rule, labels) for rule in self.include)

    def find(self, selector: str) -> Cell:
        """A cell by id (or a unique id prefix) or by index."""
        cells = self.cells()
        if selector.isdigit() and int(selector) < len(cells) and len(selector) < 8:
            return cells[int(selector)]
        matches = [c for c in cells if c.id.startswith(selector)]
        if len(matches) == 1:
            return matches[0]
        raise UserError(
            f"matrix {self.name} has no cell {selector!r} (give an id or an index 0..{len(cells) - 1}; "
            f"`lt matrix list {self.name}` shows them)"
        )

    def run_dir(self, runs: str | Path, cell: Cell) -> Path:
        """Where everything of ``cell`` lives: ``<runs>/<matrix>/<cell id>``."""
        return Path(runs) / self.name / cell.id

    def cell_args(self, cell: Cell, run_dir: Path, extra: list[str] | None = None) -> list[str]:
        """The `lt run` arguments of ``cell`` (configs, then fixed, then axis overrides, then ``extra``)."""
        args: list[str] = []
        for config in self.configs:
            args += ["--config", str(config)]
        for key, value in {**self.fixed, **cell.overrides}.items():
            args += [f"--{key}", cli_value(value)]
        return [*args, *(extra or []), "--trainer.default_root_dir", str(run_dir)]


def cell_id(matrix_name: str, overrides: dict[str, Any]) -> str:
    """8 hex digits of SHA-1 over the matrix name and the overrides (key order does not matter)."""
    text = json.dumps({"matrix": matrix_name, "overrides": overrides}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def cli_value(value: Any) -> str:
    """A value as a command-line argument: strings as they are, everything else as JSON (which is YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def rule_matches(rule: dict[str, Any], labels: dict[str, str]) -> bool:
    """True when every axis the rule names has (one of) the rule's label(s)."""
    for axis, wanted in rule.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if labels[axis] not in {label_of(o) for o in options}:
            return False
    return True


def label_of(value: Any) -> str:
    """How a value appears in tags, tables and rules: ``log_eps``, ``0.1``, ``true``."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def load_matrix(path: str | Path) -> Matrix:
    """Parse and check a matrix file (see the module docstring for the format)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict) or ("axes" not in raw and "seeds" not in raw):
        raise UserError(f"{path}: a matrix file needs `axes:` and/or `seeds:` (see lightning_tagging/matrix/spec.py)")
    unknown = set(raw) - ALLOWED_KEYS
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
    configs = [(path.parent / c).resolve() for c in _as_list(raw.get("configs", []))]
    for config in configs:
        if not config.is_file():
            raise UserError(f"{path}: config {config} does not exist")
    axes = [_parse_axis(path, name, values) for name, values in (raw.get("axes") or {}).items()]
    if "seeds" in raw:
        seeds = _as_list(raw["seeds"])
        axes.append(Axis("seed", tuple((str(s), dict.fromkeys(SEED_KEYS, s)) for s in seeds)))
    names = [axis.name for axis in axes]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise UserError(
            f"{path}: several axes are called {sorted(duplicates)}; give them names with the named form "
            "(name: {label: {key: value}})"
        )
    rules = {key: [dict(r) for r in _as_list(raw.get(key, []))] for key in ("include", "exclude")}
    for rule in rules["include"] + rules["exclude"]:
        if not isinstance(rule, dict) or set(rule) - set(names):
            raise UserError(f"{path}: rule {rule} must map axis names ({', '.join(names)}) to labels")
    matrix = Matrix(
        str(raw.get("name") or path.stem),
        path.resolve(),
        configs,
        dict(raw.get("fixed") or {}),
        axes,
        rules["include"],
        rules["exclude"],
        dict(raw.get("wandb") or {}),
    )
    if not matrix.cells():
        raise UserError(f"{path}: the rules leave no cell")
    return matrix


def _parse_axis(path: Path, name: str, values: Any) -> Axis:
    if isinstance(values, list):  # key axis: `a.b.c: [v1, v2]`, named after its last part
        if not values:
            raise UserError(f"{path}: axis {name} has no values")
        return Axis(name.rsplit(".", 1)[-1], tuple((label_of(v), {name: v}) for v in values))
    if isinstance(values, dict) and values and all(isinstance(v, dict) for v in values.values()):
        return Axis(name, tuple((str(label), dict(overrides)) for label, overrides in values.items()))
    raise UserError(
        f"{path}: axis {name} must be a list of values (`key.path: [a, b]`) or named values "
        "(`name: {label: {key.path: value, ...}}`)"
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
