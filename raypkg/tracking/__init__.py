"""Run directories (``run``: config, metrics.parquet, summary.json, artifacts), W&B logging
(``wandb_logger``), where a run's seconds went (``timings``), time-to-accuracy (``tta``) and
`effray report` (``report``). Nothing is imported here, so ``timings`` stays free of pandas."""
