"""LiPT's pre-training augmentation: the dataset's crop/flip, then RandAugment N=1 M=5
(Cubuk et al. 2020) per image, for diversity between the shard models (Ro et al. 2023, Sec. 3).

RandAugment is torchvision's (``transforms.v2.RandAugment``: its op table and its op
implementations). Each image gets its own op and sign, drawn from the loop's generator;
images that drew the same (op, sign) go through that op together as one batch, which is
the per-image transform without a Python call per image. Ops work on uint8 images, so a
batch is rescaled to [0, 255] by its own min and max and mapped back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raypkg.data.augment import CropFlip


def rand_augment(x: torch.Tensor, magnitude: int = 5, generator: torch.Generator | None = None,
                 num_bins: int = 31) -> torch.Tensor:
    """One RandAugment op (N=1) of magnitude bin ``magnitude`` on every image of [B, C, H, W]."""
    from torchvision.transforms.v2 import RandAugment

    ra = RandAugment(num_ops=1, magnitude=magnitude, num_magnitude_bins=num_bins)
    space = list(ra._AUGMENTATION_SPACE.items())
    b, _, h, w = x.shape
    gen_device = generator.device if generator is not None else torch.device("cpu")
    ops = torch.randint(len(space), (b,), generator=generator, device=gen_device).cpu()
    negative = (torch.rand(b, generator=generator, device=gen_device) <= 0.5).cpu()
    lo, hi = x.min(), x.max()
    scale = torch.clamp(hi - lo, min=1e-12)
    images = ((x - lo) / scale * 255).round().to(torch.uint8)
    out = images.clone()
    for op in ops.unique().tolist():
        name, (magnitudes_fn, signed) = space[op]
        magnitudes = magnitudes_fn(num_bins, h, w)
        signs = (False, True) if signed and magnitudes is not None else (None,)  # None: unsigned op
        for sign in signs:
            chosen = (ops == op) if sign is None else (ops == op) & (negative == sign)
            if not chosen.any():
                continue
            value = 0.0 if magnitudes is None else float(magnitudes[magnitude]) * (-1 if sign else 1)
            where = chosen.nonzero().flatten().to(x.device)
            out[where] = ra._apply_image_or_video_transform(images[where], name, value,
                                                            interpolation=ra.interpolation, fill=ra._fill)
    return out.to(x.dtype) / 255 * scale + lo


@dataclass(frozen=True)
class LiptAugment:
    """What the loop calls as ``augment(x, generator=gen)`` during LiPT's pre-training:
    ``crop_flip`` (None: off), then RandAugment N=1 M=``magnitude`` when ``randaugment``."""

    crop_flip: CropFlip | None = None
    randaugment: bool = True
    magnitude: int = 5

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.crop_flip is not None:
            x = self.crop_flip(x, generator=generator)
        if self.randaugment:
            x = rand_augment(x, self.magnitude, generator)
        return x


def lipt_augment(cfg, data) -> LiptAugment | None:
    """The pre-training augmentation for ``cfg`` on ``data``: the dataset's crop/flip as
    ``use_augmentation`` decides, plus RandAugment on image data (C, H, W) when asked for."""
    from raypkg.data.augment import use_augmentation

    crop_flip = use_augmentation(cfg, data)
    images = len(data.input_shape) == 3 and data.input_shape[0] in (1, 3)
    randaugment = bool(cfg.randaugment) and images
    if crop_flip is None and not randaugment:
        return None
    return LiptAugment(crop_flip, randaugment)
