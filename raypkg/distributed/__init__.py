"""The Ray plumbing every method shares.

- ``cluster``: which Ray a run joins (``--address``, RAY_ADDRESS, else a private local
  one) and whether a placement fits it, checked before Ray starts;
- ``shard_pool``: K actors, each holding one shard of a dataset, for per-example work and
  gradient sums (selection, CREST's coresets, DeltaGrad);
- ``jobs``: independent jobs (one per class) spread over a pool's actors.
"""
