"""Cal, Contrastive Active Learning (Margatina, Vernikos, Barrault, Aletras, EMNLP 2021,
Sec. 3, Alg. 1), as DeepCore implements it (``deepcore/methods/cal.py``, class ``Cal``).

For each example i, its ``neighbors`` nearest neighbours N(i) in feature space (DeepCore's
default k = 10, Euclidean; ``metric=cossim`` ranks by cosine similarity instead), and

    s_i = 1/k sum_{j in N(i)} d(p_i, p_j),
    d(a, b) = 0.5 KL(a || b) + 0.5 KL(b || a) = 0.5 sum_c (a_c - b_c)(log a_c - log b_c),

p = softmax(z) of the warmed-up model. The paper's score is 1/k sum_j KL(p_j || p_i);
DeepCore's ``calc_kl`` takes the symmetric d above, computed here from log-softmax so that
it stays finite where a probability underflows. The neighbours are those of DeepCore: among
the example's own class when balanced (every example of the class is "labeled"), else among
the whole set, the example itself excluded. DeepCore embeds with an ImageNet-pretrained
ResNet-18 at 224x224; here the features are the warmed-up model's penultimate h.

DeepCore keeps the k *lowest* s_i (``np.argsort(...)[::1]`` in both branches; the paper
acquires the highest, and DeepCore's issue #29 asks about it); so does this selector. The
stored score is -s_i, so that higher is the end top-k keeps (the CCS convention,
``stratify.py``). Ties keep position order; weights are 1.

Memory: the neighbour search runs per block (a class when balanced, else the whole set),
``CHUNK`` rows at a time against the block: a CHUNK x n_block distance matrix at most,
never n x n (for N = 60,000 unbalanced: 1024 x 60,000 floats, 0.25 GB). Per-class blocks
run on the shard actors when there is a pool.
"""

from __future__ import annotations

import torch

from raypkg.errors import UsageError
from raypkg.selection.methods.grand import top_k
from raypkg.selection.registry import Picks, SelectionContext, register_selector

CHUNK = 1024
METRICS = ("euclidean", "cossim")


def check_cal(options: dict) -> None:
    k = options["neighbors"]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < 100:
        raise UsageError(f"cal: neighbors must be an integer in [1, 99] (DeepCore's range), got {k!r}")
    if options["metric"] not in METRICS:
        raise UsageError(f"cal: metric must be one of {', '.join(METRICS)}, got {options['metric']!r}")


def nearest_rows(h: torch.Tensor, sq: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """[len(rows), k] positions of the k rows of ``h`` nearest (Euclidean) to each of ``rows``,
    the row itself excluded; ``sq``: the squared norms of ``h``."""
    d2 = sq[rows, None] + sq[None, :] - 2.0 * (h[rows] @ h.T)
    d2[torch.arange(len(rows), device=h.device), rows] = float("inf")
    return torch.topk(d2, k, dim=1, largest=False).indices


def cal_scores(h: torch.Tensor, logp: torch.Tensor, k: int, metric: str = "euclidean",
               chunk: int = CHUNK) -> torch.Tensor:
    """s_i (module docstring) of every row of one block: the mean symmetric KL between its
    log-probabilities ``logp`` and those of its k nearest rows by features ``h`` (all the
    other rows when fewer; 0 for a row alone), ``chunk`` rows at a time."""
    if metric == "cossim":
        h = torch.nn.functional.normalize(h, dim=1)  # Euclidean order on the sphere = cosine order
    k = max(min(k, len(h) - 1), 0)
    out = torch.zeros(len(h), dtype=torch.float64)
    if k == 0:
        return out
    sq = h.square().sum(1)
    for start in range(0, len(h), chunk):
        rows = torch.arange(start, min(start + chunk, len(h)), device=h.device)
        a, b = logp[rows, None, :], logp[nearest_rows(h, sq, rows, k)]  # [m, 1, C], [m, k, C]
        out[start:start + len(rows)] = (0.5 * (a.exp() - b.exp()) * (a - b)).sum(2).mean(1).double().cpu()
    return out


@register_selector("cal", "Cal: the k lowest mean symmetric KL between an example's softmax and its nearest "
                          "neighbours' (DeepCore's end; score: minus it)",
                   options={"neighbors": 10, "metric": "euclidean"}, check_options=check_cal, scores=True)
def cal(ctx: SelectionContext) -> Picks:
    z, h = ctx.logits_features()
    logp = torch.log_softmax(z.double(), dim=1)
    device = ctx.device if ctx.pool is None else torch.device("cpu")
    blocks = ctx.blocks()
    jobs = [(h[pos].to(device), logp[pos].to(device), ctx.options["neighbors"], ctx.options["metric"])
            for pos, _ in blocks]
    divergence = torch.zeros(len(ctx.data), dtype=torch.float64)
    for (pos, _), s in zip(blocks, ctx.run_blocks(cal_scores, jobs, [len(pos) ** 2 for pos, _ in blocks])):
        divergence[pos] = s
    scores = -divergence
    picks = torch.cat([pos[top_k(scores[pos], k)] for pos, k in blocks])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores[picks], all_scores=scores)
