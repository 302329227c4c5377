"""`effray bench NAME`: benchmarks that print ratios measured side by side in one run."""

import click

from raypkg.method_registry import METHODS, PLATFORM_BENCHES, import_object

COMMANDS = {**{m.name: m.bench for m in METHODS if m.bench}, **PLATFORM_BENCHES}  # name -> "module:command"


class LazyGroup(click.Group):
    """Imports a benchmark's module (torch, Ray, ...) only when that benchmark is asked for."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        from raypkg.cli_options import bound_integers

        return bound_integers(import_object(COMMANDS[name])) if name in COMMANDS else None


@click.group(cls=LazyGroup)
def bench():
    """Benchmarks; each prints a table of times and ratios measured in one run.

    \b
    Example:
      effray bench overhead --epochs 3
    """
