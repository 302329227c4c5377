"""`effray bench NAME`: benchmarks that print ratios measured side by side in one run."""

import click


@click.group()
def bench():
    """Benchmarks; each prints a table of times and ratios measured in one run.

    \b
    Example:
      effray bench overhead --epochs 3
    """


def _register() -> None:
    from raypkg.bench.overhead import overhead

    bench.add_command(overhead)


_register()
