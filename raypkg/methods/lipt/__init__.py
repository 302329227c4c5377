"""LiPT (Ro et al., ICML 2023): lightweight distributed pre-training for gradient-based
subset selection: K sparse shard models on Ray Train (``pretrain``), merged in one round
(``merge``), selection with the merged model, subset training on Ray Train (``reselect``)."""
