"""What every `jobs/<method>.py` Ray Job entry point shares: run one `effray` command.

A job script is the command line of one `effray` subcommand, so that

    ray job submit --working-dir . -- python jobs/train.py --dataset digits --epochs 5

does exactly what `effray train --dataset digits --epochs 5` does on the head node, and
`python jobs/train.py --help` shows that command's flags under the script's own name.

Connecting: ``ray job submit`` runs the script with RAY_ADDRESS naming the cluster. The
commands connect through ``raypkg.distributed.cluster.connect_ray()`` at the moment they first need
Ray (Ray Train workers, shard actors, Tune): it joins RAY_ADDRESS (or ``--address``) and
otherwise starts a private local Ray. So the job checks its flags before it touches Ray:
a bad flag costs one line, not a cluster connection, and a run with ``--workers 0``
trains in the job's own process on the head.
"""

from __future__ import annotations

import os
import sys

from raypkg.cli_options import join_list_flags, run_standalone, with_plugin_flags


def run_job(command_name: str, argv: list[str]) -> None:
    """Run ``effray <command_name> <argv...>`` (``command_name`` may be two words, e.g.
    ``"run coreset"``) under the script's own name, and exit with its status.

    Bad input prints one ``error: ...`` line and exits 2, as the console script does.
    """
    from raypkg.cli import main

    command = main
    for word in command_name.split():
        command = command.commands[word]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    prog = f"python {sys.argv[0]}" if sys.argv and sys.argv[0].endswith(".py") else f"effray {command_name}"
    args = join_list_flags(list(argv))
    # --with MODULE:CLASS adds its flags, as under `effray` (a plug-in that does not load: one line)
    run_standalone(lambda: with_plugin_flags(command, args).main(args=args, prog_name=prog, standalone_mode=False))
