"""`effray bench NAME`: benchmarks that print ratios measured side by side in one run."""

import importlib

import click

COMMANDS = {"overhead": "raypkg.bench.overhead:overhead", "selection": "raypkg.bench.selection:selection",
            "coreset": "raypkg.bench.coreset:coreset", "crest": "raypkg.bench.crest:crest_bench",
            "deltagrad": "raypkg.bench.deltagrad:deltagrad_bench", "lipt": "raypkg.bench.lipt:lipt_bench",
            "sparse": "raypkg.bench.sparse:sparse_bench", "data": "raypkg.bench.data:data_bench",
            "frontier": "raypkg.bench.frontier:frontier_bench"}


class LazyGroup(click.Group):
    """Imports a benchmark's module (torch, Ray, ...) only when that benchmark is asked for."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
def bench():
    """Benchmarks; each prints a table of times and ratios measured in one run.

    \b
    Example:
      effray bench overhead --epochs 3
    """
