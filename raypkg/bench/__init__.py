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
    from raypkg.bench.coreset import coreset
    from raypkg.bench.deltagrad import deltagrad_bench
    from raypkg.bench.overhead import overhead
    from raypkg.bench.selection import selection
    from raypkg.bench.sparse import sparse_bench

    for command in (overhead, selection, coreset, deltagrad_bench, sparse_bench):
        bench.add_command(command)


_register()
