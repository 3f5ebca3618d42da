"""Experiment matrices: axes of config overrides × seeds → cells with stable ids, run locally or on Slurm.

spec.py     the matrix file format, cells and their ids
status.py   a cell's status from its run dir (pending, running, done, failed)
runner.py   run one cell in-process, or many as local subprocesses
slurm.py    render slurm/array.sbatch and submit it
cli.py      `lt matrix list | run | submit`
"""

from lightning_tagging.matrix.spec import Axis, Cell, Matrix, load_matrix

__all__ = ["Axis", "Cell", "Matrix", "load_matrix"]
