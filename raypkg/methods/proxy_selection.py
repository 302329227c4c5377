"""Online proxy batch selection (Keller Jordan's airbench96_faster, 2024; the online cousin of
SVP, Coleman et al., "Selection via Proxy", ICLR 2020).

A small proxy network trains beside the main one. On every batch the plan gives, the proxy
takes a forward pass and one SGD step on the whole batch; the main model then trains only on
the round(keep x B) examples with the highest proxy loss:
    kept = top-k_i l_proxy(x_i, y_i),  k = round(keep x B) (half up, at least 1),
ties broken by position in the batch (the earlier first), so a run repeats exactly. airbench
keeps half of each batch and reaches 96.00% on CIFAR-10 in 27.3 s against 34.7 s (1.27x), the
proxy's time included.

The proxy (``--proxy-model``, ``auto``: the 300-unit MLP under a convolutional main model other
than LeNet-5, logistic regression otherwise) is built with its own seed, outside the global
RNG, so the main run draws the same numbers as without it; its SGD has the main run's
momentum, Nesterov and weight decay and follows the main schedule's LR, scaled by the ratio of
the two models' default rates (``raypkg.models.defaults``: a LeNet-5 proxy under ResNet-20
steps at 0.3x, as LeNet-5 diverges at ResNet's 0.1).
keep = 1 is plain training, bit for bit (the proxy still trains, unseen by the main model).

One algorithm on the engine's loop (``raypkg.algorithms``): `effray run proxy-selection`, or
``--with proxy-selection`` on any method's training. Free of torch at import: the command line
loads this module to build its flags.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager
from dataclasses import dataclass

from raypkg.algorithms import DATA, Algorithm, MethodSettings, kept_count, method_point  # kept_count: round(keep x B)
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError
from raypkg.recipe import BenchCase

AUTO = "auto"
PROXY_SEED = 65_537  # the proxy's init seed is seed x this + 1, its step s's seed x this + 2 + s


@dataclass
class ProxySelectionSettings(MethodSettings):
    """Proxy selection's knobs, mixed into a config that trains (`effray run proxy-selection`'s, or
    another method's with ``--with proxy-selection``)."""

    proxy_model: str = setting(AUTO, "The proxy network (`effray models`, or MODULE:FACTORY). auto: mlp under a "
                                     "convolutional --model other than lenet5, else logreg.")
    proxy_keep: float = setting(0.5, "Share of each batch the main model trains on: the examples with the highest "
                                     "proxy loss (1: every example, plain training).")
    proxy_start: float = setting(0.0, "Share of the epochs during which the main model trains on whole batches "
                                      "(the proxy trains from the start either way).")

    def checks(self) -> None:
        if not 0.0 < self.proxy_keep <= 1.0:
            raise UsageError(f"proxy-keep must be in (0, 1], got {self.proxy_keep:g}")
        if not 0.0 <= self.proxy_start <= 1.0:
            raise UsageError(f"proxy-start must be in [0, 1], got {self.proxy_start:g}")
        if self.proxy_model != AUTO:
            from raypkg.models.registry import model_entry

            try:
                model_entry(self.proxy_model)
            except UsageError as e:
                raise UsageError(f"proxy-model: {e}") from None


def proxy_name(setting: str, main_model: str, convolutional: bool) -> str:
    """The proxy model's name: the setting, or for ``auto`` the MLP under a convolutional main
    model other than LeNet-5 (about 1% of a CIFAR ResNet-20's forward FLOPs), logistic
    regression otherwise (under an MLP or LeNet-5, the MLP would cost about as much as they do)."""
    if setting != AUTO:
        return setting
    return "mlp" if convolutional and main_model != "lenet5" else "logreg"


def hardest(losses, k: int):
    """Positions in the batch of the k highest losses, in the batch's order; equal losses are
    taken in the batch's order (a stable sort)."""
    import torch

    order = torch.sort(losses, descending=True, stable=True).indices
    return order[:k].sort().values


@contextmanager
def own_rng(seed: int, device):
    """Inside: the CPU generator (and the CUDA one of ``device``) seeded with ``seed``;
    after: the global RNG exactly as before, so what follows draws the same numbers."""
    import torch

    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def build_seeded(name: str, input_shape, num_classes: int, seed: int):
    """Model ``name`` on the CPU, initialised from ``seed`` (the global RNG untouched)."""
    import torch

    from raypkg.models.registry import build_model

    with own_rng(seed, torch.device("cpu")):
        return build_model(name, input_shape, num_classes)


def on_cpu(value):
    """``value`` with every tensor copied to the CPU (a checkpoint's plain data)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


class ProxySelection(Callback):
    """Trains the proxy on each batch and cuts ``ctx.batch`` to the hardest examples; counts
    both models' example passes. ``proxy`` and ``optimizer`` exist from ``on_fit_start``."""

    def __init__(self, setting: str, keep: float, start: float):
        self.setting, self.keep, self.start = setting, keep, start
        self.proxy = self.optimizer = None
        self.name: str | None = None
        self.input_shape: tuple = ()  # the data's: the proxy sees every batch at it
        self.lr_scale = 1.0
        self.forward_flops = 0.0  # the proxy's forward FLOPs per example
        self.proxy_examples = 0  # examples through the proxy, forward and backward each
        self.main_examples = 0  # examples through the main model, forward and backward each
        self.pending: dict | None = None  # a checkpoint's proxy, loaded before the proxy exists

    def on_fit_start(self, ctx) -> None:
        from raypkg.engine.execution import is_convolutional, to_memory_format
        from raypkg.engine.optim import make_optimizer
        from raypkg.models.defaults import default_lr
        from raypkg.models.flops import forward_flops, layer_flops

        cfg, self.input_shape = ctx.cfg, tuple(ctx.train.input_shape)
        self.name = proxy_name(self.setting, cfg.model, is_convolutional(ctx.model))
        proxy = build_seeded(self.name, self.input_shape, ctx.train.num_classes, cfg.seed * PROXY_SEED + 1)
        channels_last = cfg.memory_format == "channels_last" and is_convolutional(proxy)
        self.proxy = to_memory_format(proxy.to(ctx.device), "channels_last" if channels_last else "contiguous")
        self.proxy.train()
        self.optimizer = make_optimizer(self.proxy, cfg)
        self.lr_scale = default_lr(self.name) / default_lr(cfg.model)
        self.forward_flops = forward_flops(layer_flops(self.proxy, self.input_shape))
        self.load_pending()

    def load_pending(self) -> None:
        """A checkpoint's proxy and optimizer state, once both exist."""
        if self.pending is not None and self.proxy is not None:
            self.proxy.load_state_dict(self.pending["proxy"])
            self.optimizer.load_state_dict(self.pending["optimizer"])
            self.pending = None

    def on_epoch_start(self, ctx) -> None:
        import torch

        self.loss_sum = torch.zeros((), device=ctx.device, dtype=torch.float64)
        self.epoch_examples = 0

    def on_batch_start(self, ctx) -> None:
        import torch.nn.functional as F

        from raypkg.engine.execution import autocast

        batch, x = ctx.batch, ctx.batch.x
        if x.dim() == 4 and tuple(x.shape[1:]) != self.input_shape:  # down-scaled before it (progressive resizing)
            x = F.interpolate(x, size=self.input_shape[1:], mode="bilinear", align_corners=False)
        with own_rng(ctx.cfg.seed * PROXY_SEED + 2 + ctx.global_step, ctx.device):
            with autocast(ctx.cfg.precision, ctx.device):
                logits = self.proxy(x)
            losses = F.cross_entropy(logits.float(), batch.y, reduction="none")
            # its step follows the plan's example weights (InfoBatch's); the ranking does not
            loss = losses.mean() if batch.weights is None else (batch.weights * losses).mean()
            for group in self.optimizer.param_groups:
                group["lr"] = ctx.lr * self.lr_scale
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        losses = losses.detach()
        size = len(batch.y)
        self.proxy_examples += size
        self.loss_sum += losses.double().sum()
        self.epoch_examples += size
        progress = ctx.epoch + ctx.step_in_epoch / max(ctx.steps_in_epoch, 1)
        k = kept_count(size, self.keep)
        if k == size or progress < self.start * ctx.cfg.epochs:
            return  # the whole batch: the main model trains as without a proxy
        kept = hardest(losses, k)
        ctx.batch = dataclasses.replace(batch, positions=batch.positions[kept.to(batch.positions.device)],
                                        x=batch.x[kept], y=batch.y[kept],
                                        weights=None if batch.weights is None else batch.weights[kept])

    def on_after_backward(self, ctx) -> None:
        self.main_examples += len(ctx.batch.y)

    def on_epoch_end(self, ctx, row: dict) -> None:
        row["proxy_loss"] = self.loss_sum.item() / max(self.epoch_examples, 1)

    def state_dict(self) -> dict:
        state = {"name": self.name, "forward_flops": self.forward_flops, "proxy_examples": self.proxy_examples,
                 "main_examples": self.main_examples}
        if self.proxy is not None:
            state.update(proxy=on_cpu(self.proxy.state_dict()), optimizer=on_cpu(self.optimizer.state_dict()))
        elif self.pending is not None:
            state.update(proxy=self.pending["proxy"], optimizer=self.pending["optimizer"])
        return state

    def load_state_dict(self, state: dict) -> None:
        self.name, self.forward_flops = state["name"], state["forward_flops"]
        self.proxy_examples, self.main_examples = state["proxy_examples"], state["main_examples"]
        if "proxy" in state:  # before on_fit_start (a resumed run): kept until the proxy is built
            self.pending = {"proxy": state["proxy"], "optimizer": state["optimizer"]}
            self.load_pending()


def proxy_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples the plan drew (each through the proxy) and both models' passes in forward
    FLOPs: a forward pass costs one forward, a backward two (TRAIN_STEP_FACTOR 3), the main
    model's at ``per_example()``, the proxy's at its own forward FLOPs (from the run's notes)."""
    main = (summary["main_forward_examples"] + 2 * summary["main_backward_examples"]) / 3
    proxy = (summary["proxy_forward_examples"] + 2 * summary["proxy_backward_examples"]) / 3
    return summary["proxy_forward_examples"], main * per_example() + proxy * summary["proxy_forward_flops"]


@functools.cache
def estimated_proxy_flops(model: str, setting: str, dataset: str, options: tuple) -> float:
    """The proxy's forward FLOPs per example on ``dataset`` (loaded to read its input shape)."""
    from raypkg.data.registry import load_dataset
    from raypkg.engine.execution import is_convolutional
    from raypkg.models.flops import forward_flops, layer_flops

    data = load_dataset(dataset, **dict(options))
    shape, classes = data.input_shape, data.num_classes
    name = proxy_name(setting, model, setting == AUTO and is_convolutional(build_seeded(model, shape, classes, 0)))
    return forward_flops(layer_flops(build_seeded(name, shape, classes, 0), shape))


class ProxyBatchSelection(Algorithm):
    """Proxy selection: a small proxy picks the hardest part of each batch for the main model.

    On every batch the proxy takes one SGD step and the main model trains only on the
    --proxy-keep share of the batch with the highest proxy loss (airbench96_faster, Jordan
    2024). With no flags: keep 0.5 from the start, proxy logreg under the MLP, on the
    embedded digits data. --proxy-keep 1 is plain training, bit for bit.

    \b
    Examples:
      effray run proxy-selection
      effray run proxy-selection --dataset digits-aug --model resnet20 --epochs 10 --proxy-keep 0.5
      effray run infobatch --with proxy-selection --proxy-model logreg
    """

    name, order = "proxy-selection", DATA  # it cuts the plan's batches before the loss sees them
    settings = ProxySelectionSettings
    metrics = ("proxy_loss",)
    bench_cases = (BenchCase("proxy-selection", "proxy-selection", ("proxy-selection",), None, config=method_point,
                             examples=proxy_examples, default=False, marker="P"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.selection = ProxySelection(cfg.proxy_model, cfg.proxy_keep, cfg.proxy_start)
        self.callbacks = [self.selection]

    @staticmethod
    def check(cfg, data) -> str | None:
        """One process only (the proxy is not synchronised over ranks), and a proxy that takes
        the data's inputs and gives one logit per class."""
        import torch

        from raypkg.engine.execution import is_convolutional

        if cfg.workers > 1:
            raise UsageError(f"--workers {cfg.workers}: proxy-selection trains its proxy on each rank's own batches "
                             "without syncing them, so the ranks' selections would differ; use --workers 0 or 1")
        shape, classes = getattr(data, "input_shape", None), getattr(data, "num_classes", None)
        if shape is None:
            return None
        convolutional = cfg.proxy_model == AUTO and is_convolutional(build_seeded(cfg.model, shape, classes, 0))
        name = proxy_name(cfg.proxy_model, cfg.model, convolutional)
        try:
            proxy = build_seeded(name, shape, classes, 0).eval()
            with torch.no_grad():
                out = proxy(torch.zeros(2, *shape))
        except UsageError as e:  # a plug-in's factory failed
            raise UsageError(f"proxy-model: {e}") from None
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise UsageError(f"proxy-model {name}: the proxy fails on the data's inputs of shape {tuple(shape)}: "
                             f"{type(e).__name__}: {first}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UsageError(f"proxy-model {name} must output [batch, {classes}] logits, got {got}")
        return None

    @staticmethod
    def stacked_flops(cfg, per_example):
        """An estimate from the config, for a method with proxy selection added: of each
        example the plan draws, the main model trains on share = start + (1 - start) x keep
        (each batch's rounding left out), the proxy on all of it, so per example
        share x the main model's forward FLOPs + the proxy's (at the dataset's input shape,
        read by loading it once)."""
        share = cfg.proxy_start + (1 - cfg.proxy_start) * cfg.proxy_keep
        proxy = estimated_proxy_flops(cfg.model, cfg.proxy_model, cfg.dataset,
                                      tuple(sorted(cfg.data_options().items())))
        return lambda density=1.0, init="ERK": share * per_example(density, init) + proxy

    @staticmethod
    def headline(summary: dict) -> str:
        share = summary["main_forward_examples"] / max(summary["proxy_forward_examples"], 1)
        cost = summary["proxy_forward_flops"] / max(summary["main_forward_flops"], 1e-30)
        return (f"main model trained on {share:.1%} of the examples drawn; proxy {summary['proxy_model']} at "
                f"{cost:.1%} of its forward FLOPs")

    def finish(self, run, trained) -> dict:
        """Both models' example passes (forward and backward each) and forward FLOPs per example."""
        from raypkg.models.flops import forward_flops, layer_flops

        s = self.selection
        return dict(proxy_model=s.name, proxy_keep=self.cfg.proxy_keep, proxy_start=self.cfg.proxy_start,
                    proxy_forward_examples=s.proxy_examples, proxy_backward_examples=s.proxy_examples,
                    main_forward_examples=s.main_examples, main_backward_examples=s.main_examples,
                    proxy_forward_flops=s.forward_flops,
                    main_forward_flops=forward_flops(layer_flops(trained.model, run.data.input_shape)))
