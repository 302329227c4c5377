"""DeltaGrad (Wu, Dobriban, Davidson, ICML 2020): rapid retraining after small deletions
or additions, from a cached SGD/GD trajectory: Algorithm 1 of Wu, Dobriban, Davidson,
"DeltaGrad: Rapid retraining of machine learning models" (ICML 2020), with the compact
L-BFGS product of Byrd, Nocedal, Schnabel, "Representations of quasi-Newton matrices and
their use in limited memory methods" (Math. Programming 63, 1994).

Modules, in reading order:
  flatnet     the model as one flat parameter vector; closed-form per-batch gradient sums
  exact       exact gradient sums over chosen rows, in-process or over Ray shard actors
  trajectory  the cached run (w_t, g_t, lr_t, permutations; memory-mapped) and batch plans
  lbfgs       compact L-BFGS product B v (Byrd-Nocedal-Schnabel 1994) with safeguards
  replay      training / baseline retrain (exact replay) and DeltaGrad itself
  workload    the run's config, data and model; training and caching a run
  requests    checking user ids, serving one request with both methods
  online      a stream of requests served by DeltaGrad, with an exact-retrain rule
  commands    the `effray unlearn` click group (train, delete, add, online)
  config      the configs of `effray unlearn` and `effray tune deltagrad`
  recipe      their recipes: unlearn-train, unlearn-request, unlearn-online, deltagrad (tune)
"""

METHODS = ("deltagrad", "baseline", "both")  # what a request runs: DeltaGrad, the retrain, or both
