"""`lt report M`: a matrix's run dirs → Markdown, CSV and PNG (no network; nothing but the run dirs).

collect.py   every cell's state, metrics and α/β trajectory, from its run dir
tables.py    grouping over seeds (mean ± std, n), the Markdown report and the CSV files
plots.py     metric vs training size, log_learn vs log_eps, α/β trajectories
cli.py       `lt report M [--runs DIR] [--out DIR]`
"""
