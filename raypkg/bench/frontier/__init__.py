"""`effray bench frontier`: every method family on one dataset and model, one seed set,
epoch budget and LR schedule: what accuracy each method buys per second and per FLOP,
judged against the budget curve (Li et al., *Budgeted Training*, ICLR 2020; Kaddour et al.,
*No Train No Gain*, NeurIPS 2023). Its parts, each a module a reader can name:

- ``points``: what to run, a point per method, setting and seed (the presets too);
- ``scheduler``: where it runs, the points as Ray tasks spread over the cluster;
- ``store``: what is kept, each point written as it finishes, so a frontier resumes;
- ``judge``: what is judged, the clock, the curve's ratios, their statistics and verdicts;
- ``report``: what is shown, the tables and plots;
- ``command``: the click command that strings them together.
"""

from raypkg.bench.frontier.command import frontier_bench
from raypkg.bench.frontier.judge import TABLE_COLUMNS, add_deltas, aggregate, flops_only, is_reference
from raypkg.bench.frontier.points import (
    PRESETS,
    build_points,
    method_names,
    preset_settings,
    setup_name,
    stacked_examples,
)
from raypkg.bench.frontier.report import plot_frontier

__all__ = ["PRESETS", "TABLE_COLUMNS", "add_deltas", "aggregate", "build_points", "flops_only", "frontier_bench",
           "is_reference", "method_names", "plot_frontier", "preset_settings", "setup_name", "stacked_examples"]
