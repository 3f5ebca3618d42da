"""Matrix files → cells: expansion, stable ids, rules, the shipped matrices, `lt matrix list` and `submit --dry-run`.

No training here (see test_matrix_run.py and test_slurm.py for cells that run).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lightning_tagging.cli import main
from lightning_tagging.matrix.spec import load_matrix

REPO = Path(__file__).resolve().parents[1]
MATRICES = REPO / "experiments" / "matrices"


def write_matrix(folder: Path, body: str, name: str = "m") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


BASIC = f"""
    configs: [{REPO / "experiments" / "demo.yaml"}]
    fixed: {{trainer.max_epochs: 1}}
    axes:
      backbone:
        musicnn: {{model.backbone: lightning_tagging.models.Musicnn}}
        vgg: {{model.backbone: lightning_tagging.models.VGG, model.backbone.init_args.filters: 8}}
      model.frontend.init_args.compression: [log_eps, log_learn]
    seeds: [0, 1]
"""


def test_cells_are_the_product_of_the_axes_in_order(tmp_path: Path) -> None:
    matrix = load_matrix(write_matrix(tmp_path, BASIC))
    cells = matrix.cells()
    assert matrix.name == "m" and len(cells) == 8
    assert [c.index for c in cells] == list(range(8))
    assert cells[0].axes == {"backbone": "musicnn", "compression": "log_eps", "seed": "0"}
    assert cells[1].axes["seed"] == "1"  # the last axis varies fastest
    assert cells[4].overrides == {
        "model.backbone": "lightning_tagging.models.VGG",
        "model.backbone.init_args.filters": 8,
        "model.frontend.init_args.compression": "log_eps",
        "seed_everything": 0,
        "data.seed": 0,
    }
    assert len({c.id for c in cells}) == 8 and all(re.fullmatch(r"[0-9a-f]{8}", c.id) for c in cells)


def test_a_cell_id_depends_on_its_overrides_and_the_matrix_name_only(tmp_path: Path) -> None:
    ids = {frozenset(c.axes.items()): c.id for c in load_matrix(write_matrix(tmp_path, BASIC)).cells()}
    # Other orders of axes values, an extra seed, another fixed part: the same cells keep their ids.
    edited = BASIC.replace("[log_eps, log_learn]", "[log_learn, log_eps]").replace("[0, 1]", "[2, 1, 0]")
    edited = edited.replace("trainer.max_epochs: 1", "trainer.max_epochs: 5")
    (tmp_path / "edited").mkdir()
    cells = load_matrix(write_matrix(tmp_path / "edited", edited)).cells()
    assert len(cells) == 12
    assert sum(ids.get(frozenset(c.axes.items())) == c.id for c in cells) == 8
    renamed = load_matrix(write_matrix(tmp_path, BASIC, name="another"))
    assert not {c.id for c in renamed.cells()} & set(ids.values())  # W&B ids stay unique across matrices


def test_include_and_exclude_rules(tmp_path: Path) -> None:
    body = BASIC + "    exclude: [{backbone: vgg, compression: log_learn}]\n    include: [{seed: 0}, {backbone: vgg}]\n"
    cells = load_matrix(write_matrix(tmp_path, body)).cells()
    labels = [(c.axes["backbone"], c.axes["compression"], c.axes["seed"]) for c in cells]
    assert labels == [
        ("musicnn", "log_eps", "0"),
        ("musicnn", "log_learn", "0"),
        ("vgg", "log_eps", "0"),
        ("vgg", "log_eps", "1"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("axes: {a.b: []}\n", "has no values"),
        ("axes: {x.seed: [1]}\nseeds: [0]\n", "several axes are called ['seed']"),
        ("axes: {a.b: [1]}\nexclude: [{nope: 1}]\n", "must map axis names"),
        ("axes: {a.b: [1]}\ncolour: red\n", "unknown keys ['colour']"),
        ("axes: {a.b: [1]}\nconfigs: [missing.yaml]\n", "does not exist"),
        ("axes: {a.b: [1]}\ninclude: [{b: 2}]\n", "the rules leave no cell"),
    ],
)
def test_mistakes_in_a_matrix_file_are_one_clear_error(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_matrix(tmp_path, body)
    assert main(["matrix", "list", str(path), "--runs", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.stem for p in MATRICES.glob("*.yaml")))
def test_shipped_matrices_expand(name: str) -> None:
    matrix = load_matrix(MATRICES / f"{name}.yaml")
    cells = matrix.cells()
    expected = {
        "log_compression_mtt": 12,
        "log_compression_msd": 12,
        "data_size_mtt": 18,
        "data_size_msd": 18,
        "smoke_log_compression": 8,
        "smoke_data_size": 12,
    }
    assert len(cells) == expected[name]
    for config in matrix.configs:
        assert config.is_file()
    if name.startswith(("data_size", "smoke_data_size")):
        sizes = {c.overrides["data.train_size"] for c in cells}
        assert sizes == ({0.01, 0.1, 1.0} if name.startswith("data_size") else {0.1, 0.5, 1.0})
        assert all(isinstance(s, float) for s in sizes)  # fractions, not clip counts (1.0 is all, 1 is one clip)
        assert {c.axes["model"] for c in cells} == {"samplecnn", "musicnn"}
    if "log_compression" in name:
        assert {c.axes["compression"] for c in cells} == {"log_eps", "log_learn"}
        assert {c.axes["backbone"] for c in cells} == {"musicnn", "vgg"}
    assert {c.axes["seed"] for c in cells} == ({"0", "1"} if name.startswith("smoke") else {"0", "1", "2"})


def test_list_shows_every_cell_its_axes_status_and_what_labels_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["matrix", "list", "smoke_log_compression", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    matrix = load_matrix(MATRICES / "smoke_log_compression.yaml")
    for cell in matrix.cells():
        line = next(line for line in out.splitlines() if cell.id in line)
        assert "pending" in line and all(label in line for label in cell.axes.values())
    assert "0 done, 0 running, 8 pending, 0 failed" in out
    assert "backbone=vgg: model.backbone=lightning_tagging.models.VGG model.backbone.init_args.filters=8" in out


def test_find_a_cell_by_index_id_or_prefix() -> None:
    matrix = load_matrix(MATRICES / "smoke_log_compression.yaml")
    third = matrix.cells()[3]
    assert matrix.find("3") == third and matrix.find(third.id) == third and matrix.find(third.id[:5]) == third


def test_submit_dry_run_renders_one_array_task_per_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "matrix",
            "submit",
            "log_compression_mtt",
            "--runs",
            str(tmp_path),
            "--dry-run",
            "--partition",
            "gpu",
            "--gpus-per-cell",
            "4",
            "--cpus-per-gpu",
            "8",
            "--mem",
            "64G",
            "--time",
            "12:00:00",
            "--max-parallel",
            "3",
            "--",
            "--data.root",
            "/scratch/mtt",
        ]
    )
    assert code == 0
    script = capsys.readouterr().out
    cells = load_matrix(MATRICES / "log_compression_mtt.yaml").cells()
    for line in (
        "#SBATCH --array=0-11%3",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --mem=64G",
        "#SBATCH --time=12:00:00",
        "#SBATCH --signal=SIGUSR1@90",
        "#SBATCH --requeue",
        f"CELLS=({' '.join(c.id for c in cells)})",
    ):
        assert line in script.splitlines(), line
    srun = script[script.index("srun ") :]
    assert f"--runs {tmp_path}" in srun and '--cell "$CELL"' in srun
    assert "-- --data.root /scratch/mtt --trainer.accelerator gpu --trainer.devices 4" in srun
    assert not (tmp_path / "log_compression_mtt").exists()  # a dry run writes nothing


def test_submit_dry_run_of_chosen_cells_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = load_matrix(MATRICES / "data_size_mtt.yaml").cells()
    assert (
        main(
            [
                "matrix",
                "submit",
                "data_size_mtt",
                "--runs",
                str(tmp_path),
                "--dry-run",
                "--cell",
                "5",
                "--cell",
                cells[7].id,
            ]
        )
        == 0
    )
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-1%8" in script and f"CELLS=({cells[5].id} {cells[7].id})" in script
    assert "#SBATCH --ntasks-per-node=1" in script and "--gpus-per-node" not in script
