"""Run directories (config, metrics.parquet, summary.json, artifacts) and W&B logging."""

from raypkg.tracking.run import RunDir, read_summary, write_parquet

__all__ = ["RunDir", "read_summary", "write_parquet"]
