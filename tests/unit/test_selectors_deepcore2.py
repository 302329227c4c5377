"""DeepCore's Forgetting, Cal and DeepFool selectors: forgetting counts against a hand count
and the warm-up's own predictions, Cal's score against a hand-computed mean KL, DeepFool's
distance against the closed form of a linear model; budgets, CCS, the cache and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import identity_logreg, points, tiny_problem

from raypkg.cli import main
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit
from raypkg.errors import UsageError
from raypkg.models.zoo.mlp import MLP
from raypkg.recipe import load_data
from raypkg.selection import Keep, select
from raypkg.selection.budget import class_budgets, subset_size
from raypkg.selection.cache import SelectionCache
from raypkg.selection.config import CoresetConfig
from raypkg.selection.methods.cal import cal_scores
from raypkg.selection.methods.deepfool import deepfool_distances
from raypkg.selection.methods.forgetting import ForgettingEvents

NEW = ("forgetting", "cal", "deepfool")


def with_counts(model: torch.nn.Module, counts) -> torch.nn.Module:
    """``model`` carrying a warm-up record of forgetting ``counts`` (as ``pretrain_full`` leaves it)."""
    counts = torch.as_tensor(counts, dtype=torch.long)
    model.warmup_record = {"counts": counts, "last_correct": torch.zeros(len(counts), dtype=torch.bool)}
    return model


# ------------------------------------------------------------------------------ Forgetting

def test_forgetting_counts_equal_a_hand_count_of_correct_then_wrong_presentations():
    # presentations (1 correct, 0 wrong); an event is a 1 followed by a 0 at the example's next one
    sequences = {0: [1, 0, 1, 1, 0, 0, 1],  # two events
                 1: [0, 0, 1, 0],  # one: the first presentation is never an event
                 2: [0, 0, 0, 0, 0, 0],  # never learned: none (as DeepCore counts it)
                 3: [1, 1, 1, 1, 1]}  # unforgettable: none
    events = ForgettingEvents(5)  # example 4 is never presented
    for t in range(7):  # one batch per step, of the examples that still have a presentation
        batch = [i for i, seq in sequences.items() if t < len(seq)]
        events.record(torch.tensor(batch), torch.tensor([sequences[i][t] for i in batch], dtype=torch.bool))
    assert events.counts.tolist() == [2, 1, 0, 0, 0]
    assert events.last_correct.tolist() == [True, False, False, True, False]
    copy = ForgettingEvents(5)
    copy.load_state_dict(events.state_dict())
    assert copy.counts.tolist() == [2, 1, 0, 0, 0] and copy.last_correct.tolist() == events.last_correct.tolist()


class Predictions(Callback):
    """Every step's (positions, correct) from the training forward's logits."""

    def __init__(self):
        self.steps: list[tuple[list[int], list[bool]]] = []

    def on_step_end(self, ctx):
        b = ctx.batch
        self.steps.append((b.positions.tolist(), (b.logits.argmax(1) == b.y).tolist()))


def test_warmup_callback_counts_what_the_training_forward_predicted():
    _, data = tiny_problem(n=90, seed=4)
    model = MLP((6,), 3).double()  # untrained: its predictions change over the epochs
    events, seen = ForgettingEvents(len(data)), Predictions()
    fit(model, data, None, TrainConfig(precision="fp32", memory_format="contiguous", epochs=4, batch_size=16, lr=[0.5], progress=False).validate(),
        callbacks=[events, seen])
    last: dict[int, bool] = {}
    counts = [0] * len(data)
    for positions, correct in seen.steps:  # the definition, one presentation at a time
        for i, ok in zip(positions, correct):
            counts[i] += int(last.get(i, False) and not ok)
            last[i] = ok
    assert len(last) == len(data) and sum(counts) > 0
    assert events.counts.tolist() == counts
    assert events.last_correct.tolist() == [last[i] for i in range(len(data))]


def test_warmup_callback_with_a_frozen_model_records_its_predictions():
    model, data = tiny_problem(n=60, seed=2)
    with torch.no_grad():
        correct = model(data.x).argmax(1) == data.y
    events = ForgettingEvents(len(data))
    frozen = TrainConfig(precision="fp32", memory_format="contiguous", epochs=2, batch_size=8, lr=[0.0], weight_decay=0.0, progress=False)  # lr 0: not a valid run
    fit(model, data, None, frozen, callbacks=[events])
    assert events.last_correct.tolist() == correct.tolist() and not bool(correct.all())
    assert int(events.counts.sum()) == 0  # the same prediction at every presentation


def test_forgetting_keeps_the_most_forgotten_and_breaks_ties_with_the_seed():
    model, data = tiny_problem(n=60)
    counts = torch.zeros(len(data), dtype=torch.long)
    counts[:7] = torch.tensor([5, 4, 4, 3, 2, 1, 1])
    model = with_counts(model, counts)
    res = select("forgetting", model, data, Keep(budget=10, balance=False), seed=0)
    assert set(res.positions[:7].tolist()) == set(range(7))  # every forgotten example, most forgotten first
    assert res.scores.tolist() == [5, 4, 4, 3, 2, 1, 1, 0, 0, 0]
    torch.testing.assert_close(res.all_scores, counts.double())
    rest = {tuple(select("forgetting", model, data, Keep(budget=10, balance=False), seed=s).positions[7:].tolist())
            for s in range(4)}
    assert len(rest) > 1  # the three picks among the 53 unforgotten follow the seed ...
    again = select("forgetting", model, data, Keep(budget=10, balance=False), seed=0)
    assert again.positions.tolist() == res.positions.tolist()  # ... deterministically
    balanced = select("forgetting", model, data, Keep(budget=9), seed=0)
    for c, k in enumerate(class_budgets(data.y, 3, 9)):  # per class: its k most forgotten
        pos = torch.nonzero(data.y == c).squeeze(1)
        picked = balanced.positions[data.y[balanced.positions] == c]
        assert len(picked) == k
        best = counts[pos].sort(descending=True).values[:k]
        assert counts[picked].sort(descending=True).values.tolist() == best.tolist()


def test_forgetting_without_a_warmup_record_is_a_usage_error():
    model, data = tiny_problem(n=30)
    with pytest.raises(UsageError, match="warm-up"):
        select("forgetting", model, data, Keep(budget=5))


def test_pretrain_caches_the_counts_and_older_entries_without_them_still_load(tmp_path):
    from raypkg.engine.loop import pick_device
    from raypkg.selection.pipeline import pretrain, select_stage

    torch.set_num_threads(1)
    cfg = CoresetConfig(dataset="digits", model="logreg", selection="entropy", fraction=0.1, pretrain_epochs=2,
                        batch_size=32, progress=False, precision="fp32", memory_format="contiguous").resolved()
    data, device = load_data(cfg), pick_device(False)
    cache = SelectionCache(tmp_path)
    plain = pretrain(cfg, data, device, None, cache)  # an entry without counts
    assert plain.cache_hits == 0 and not hasattr(plain.models[0], "warmup_record")
    assert pretrain(cfg, data, device, None, cache).cache_hits == 1
    fcfg = dataclasses.replace(cfg, selection="forgetting")
    first = pretrain(fcfg, data, device, None, cache)
    assert first.cache_hits == 0  # trained again, for its counts: the same weights
    assert first.digests == plain.digests
    record = first.models[0].warmup_record
    assert len(record["counts"]) == len(data.train) and int(record["counts"].sum()) > 0
    hit = pretrain(fcfg, data, device, None, cache)
    assert hit.cache_hits == 1 and torch.equal(hit.models[0].warmup_record["counts"], record["counts"])
    assert pretrain(cfg, data, device, None, cache).cache_hits == 1  # entropy loads the entry with counts
    picked = [select_stage(fcfg, data, p, device)[0].indices.tolist() for p in (first, hit)]
    assert picked[0] == picked[1]


# ------------------------------------------------------------------------------------ Cal

def test_cal_score_is_the_hand_computed_mean_symmetric_kl_to_the_nearest_neighbours():
    # logits = features = inputs; class 0 at rows 0-3, class 1 at rows 4-6
    rows = [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.5, 0.5, 0.0], [3.0, 0.0, 0.0],
            [0.0, 2.0, 0.0], [0.0, 2.2, 0.3], [0.2, 0.1, 0.05]]
    y = [0, 0, 0, 0, 1, 1, 1]
    data = points(rows, classes=3, y=y)

    def softmax(v):
        e = [math.exp(t) for t in v]
        return [t / sum(e) for t in e]

    def sym_kl(a, b):
        pa, pb = softmax(a), softmax(b)
        return sum(0.5 * p * math.log(p / q) + 0.5 * q * math.log(q / p) for p, q in zip(pa, pb))

    def hand(i, members, k):
        near = sorted((j for j in members if j != i), key=lambda j: math.dist(rows[i], rows[j]))[:k]
        return sum(sym_kl(rows[i], rows[j]) for j in near) / len(near)

    model = identity_logreg(3, 3)
    for balance in (True, False):
        res = select("cal", model, data, Keep(budget=3, balance=balance), options={"neighbors": 2})
        members = [[j for j in range(7) if y[j] == y[i]] if balance else list(range(7)) for i in range(7)]
        expected = torch.tensor([hand(i, members[i], 2) for i in range(7)], dtype=torch.float64)
        torch.testing.assert_close(res.all_scores, -expected, rtol=1e-12, atol=1e-14)
        for c, k in (enumerate(res.info["budgets"]) if balance else [(None, 3)]):  # DeepCore keeps the lowest
            pos = [i for i in range(7) if c is None or y[i] == c]
            assert [p for p in res.positions.tolist() if p in pos] == sorted(pos, key=lambda i: expected[i])[:k]
    # 6's nearest are 0 and 1 over the whole set, 4 and 5 (all it has) within class 1
    assert hand(6, range(7), 2) != hand(6, [4, 5], 2)


def test_cal_blocks_equal_the_full_distance_matrix():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(torch.randn(300, 4, generator=gen, dtype=torch.float64), dim=1)
    d = torch.cdist(h, h)
    d.fill_diagonal_(float("inf"))
    knn = torch.sort(d, dim=1).indices[:, :10]
    a, b = logp[:, None], logp[knn]
    full = (0.5 * (a.exp() - b.exp()) * (a - b)).sum(2).mean(1)
    for chunk in (7, 64, 1024):
        torch.testing.assert_close(cal_scores(h, logp, 10, chunk=chunk), full, rtol=1e-12, atol=1e-14)
    unit = torch.nn.functional.normalize(h, dim=1)
    knn = torch.sort(unit @ unit.T - 3 * torch.eye(300, dtype=torch.float64), dim=1, descending=True).indices[:, :10]
    b = logp[knn]
    torch.testing.assert_close(cal_scores(h, logp, 10, "cossim", chunk=50),
                               (0.5 * (a.exp() - b.exp()) * (a - b)).sum(2).mean(1), rtol=1e-12, atol=1e-14)


# -------------------------------------------------------------------------------- DeepFool

def test_deepfool_distance_of_a_linear_model_is_the_closed_form():
    gen = torch.Generator().manual_seed(1)
    model = MLP((6,), 4).double()  # one linear layer
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(4, 6, generator=gen, dtype=torch.float64))
        model.head.bias.copy_(torch.randn(4, generator=gen, dtype=torch.float64))
    x = torch.randn(80, 6, generator=gen, dtype=torch.float64)
    w, b = model.head.weight.detach(), model.head.bias.detach()
    z = x @ w.T + b
    label = z.argmax(1)
    closed = torch.tensor([min(abs(float(z[i, c] - z[i, label[i]])) / float((w[c] - w[label[i]]).norm())
                               for c in range(4) if c != label[i]) for i in range(80)], dtype=torch.float64)
    for overshoot in (0.02, 0.0):  # the paper's push across, and DeepCore's steps (which land on the boundary)
        torch.testing.assert_close(deepfool_distances(model, x, 50, overshoot), closed, rtol=1e-9, atol=1e-12)
    data = points(x.tolist(), classes=4, y=label)
    res = select("deepfool", model, data, Keep(budget=20, balance=False))
    torch.testing.assert_close(res.all_scores, -closed, rtol=1e-9, atol=1e-12)
    assert res.positions.tolist() == torch.sort(closed, stable=True).indices[:20].tolist()


def test_deepfool_perturbation_flips_a_relu_network_and_leaves_it_as_it_was():
    model, data = tiny_problem(n=40)  # one hidden ReLU layer: several linearisations
    model.train()
    model.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one, found = (deepfool_distances(model, data.x, it, 0.02) for it in (1, 50))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert bool((found >= one - 1e-12).all())
    # the iteration again, one example at a time: x + 1.02 r is across, r the sum of DeepFool's steps
    with torch.no_grad():
        label = model(data.x).argmax(1)
    stuck = 0
    for i, x in enumerate(data.x):
        r, across = torch.zeros_like(x), False
        for _ in range(50):
            xi = (x + 1.02 * r).requires_grad_(True)
            f = model(xi[None])[0]
            if across := int(f.argmax()) != int(label[i]):
                break
            grads = torch.stack([torch.autograd.grad(f[c], xi, retain_graph=True)[0] for c in range(3)])
            w, gap = grads - grads[label[i]], (f - f[label[i]]).detach().abs()
            ratio = [float(gap[c] / w[c].norm()) if c != label[i] and w[c].norm() > 0 else math.inf
                     for c in range(3)]
            c = min(range(3), key=lambda j: ratio[j])
            if ratio[c] == math.inf:  # every hidden unit off: no gradient, no boundary in reach
                break
            r = r + gap[c] / w[c].norm() ** 2 * w[c]
        if across:
            assert float(r.norm()) == pytest.approx(float(found[i]), rel=1e-9, abs=1e-12) and float(r.norm()) > 0
        else:
            stuck += 1
            assert found[i] == math.inf
    assert 0 < stuck < len(data)
    res = select("deepfool", model, data, Keep(budget=10, balance=False))
    finite = found[torch.isfinite(found)]
    assert torch.isfinite(res.all_scores).all() and float(res.all_scores.min()) == -float(finite.max())


# ----------------------------------------------------------------------- every new selector

def test_bad_options_are_usage_errors():
    model, data = tiny_problem(n=30)
    for method, options in (("cal", {"neighbors": 0}), ("cal", {"neighbors": 100}), ("cal", {"metric": "l1"}),
                            ("deepfool", {"max_iter": 0}), ("deepfool", {"overshoot": -0.1}),
                            ("deepfool", {"max_iter": 2.5})):
        with pytest.raises(UsageError, match=method):
            select(method, model, data, Keep(budget=5), options=options)


@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("fraction,balance,stratify", [(0.1, True, "none"), (0.37, True, "none"),
                                                       (0.25, False, "none"), (0.2, True, "ccs")])
def test_every_new_method_returns_exactly_the_budget(method, fraction, balance, stratify):
    model, data = tiny_problem(n=150, classes=3)
    with_counts(model, torch.randint(0, 4, (150,), generator=torch.Generator().manual_seed(0)))
    res = select(method, model, data, Keep(fraction=fraction, balance=balance, stratify=stratify), seed=1)
    k = subset_size(len(data), fraction)
    assert len(res) == k and len(torch.unique(res.indices)) == k
    assert bool((res.weights == 1).all())
    torch.testing.assert_close(data.index[res.positions], res.indices)
    assert res.all_scores is not None and len(res.all_scores) == len(data)
    if balance:
        assert torch.bincount(data.y[res.positions], minlength=3).tolist() == class_budgets(data.y, 3, k)
    again = select(method, model, data, Keep(fraction=fraction, balance=balance, stratify=stratify), seed=1)
    assert again.indices.tolist() == res.indices.tolist()


def test_select_forgetting_through_the_cli_and_its_cache_hit(tmp_path):
    torch.set_num_threads(1)
    args = ["select", "--selection", "forgetting", "--dataset", "digits", "--model", "logreg",
            "--pretrain-epochs", "2", "--batch-size", "32", "--fraction", "0.1", "--out", str(tmp_path),
            "--wandb", "disabled", "--no-progress"]
    summaries, tables = [], []
    for _ in range(2):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
        summaries.append(json.loads(open(f"{run_dir}/summary.json").read()))
        tables.append((pd.read_parquet(f"{run_dir}/selection.parquet"), pd.read_parquet(f"{run_dir}/scores.parquet")))
    assert summaries[0]["cached"] == {"pretrain_hits": 0, "selection_hit": False}
    assert summaries[1]["cached"] == {"pretrain_hits": 1, "selection_hit": True}
    (picked, scores), (again, _) = tables
    assert len(picked) == summaries[0]["subset_size"] == round(0.1 * summaries[0]["train_size"])
    assert again["index"].tolist() == picked["index"].tolist()
    counts = scores.set_index("index")["score"]
    assert (counts == counts.round()).all() and counts.max() >= 1  # whole numbers of events, some forgotten
    labels = pd.Series(load_data(CoresetConfig(dataset="digits").resolved()).train.y.numpy(), index=counts.index)
    for label, group in picked.groupby("label"):  # per class, no example left out was forgotten more often
        rest = counts[(labels == label) & ~counts.index.isin(picked["index"])]
        assert group["score"].min() >= rest.max()
