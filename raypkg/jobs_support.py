"""What every `jobs/<method>.py` Ray Job entry point shares: run one `effray` command.

A job script is the command line of one `effray` subcommand, so that

    ray job submit --working-dir . -- python jobs/train.py --dataset digits --epochs 5

does exactly what `effray train --dataset digits --epochs 5` does on the head node.

Connecting: ``ray job submit`` runs the script with RAY_ADDRESS naming the cluster. The
commands connect through ``raypkg.cluster.connect_ray()`` at the moment they first need
Ray (Ray Train workers, shard actors, Tune), and ``connect_ray`` attaches to RAY_ADDRESS,
or to a cluster already running on the machine, or else starts a local Ray. So the job
checks its flags before it touches Ray: a bad flag costs one line, not a cluster
connection, and a run with ``--workers 0`` trains in the job's own process on the head.
"""

from __future__ import annotations

from raypkg.cli import main


def run_job(command_name: str, argv: list[str]) -> None:
    """Run ``effray <command_name> <argv...>`` and exit with its status.

    Standalone click mode: bad input prints one ``error: ...`` line and exits 2, the
    same as the console script; ``--help`` shows the command's help.
    """
    main.main(args=[command_name, *argv], prog_name="effray", standalone_mode=True)
