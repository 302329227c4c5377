"""InfoBatch: unbiased dynamic data pruning (Qin et al., ICLR 2024) on the engine."""
