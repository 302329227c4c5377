"""Batched augmentation that runs on whatever device the batch is on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a batch [B, C, H, W].

    Every image gets its own offsets and flip, drawn in one call each, and the crops
    are gathered with one advanced-indexing op: no per-image Python loop. The output
    window of image ``i`` is ``pad(x[i])[:, dy[i]:dy[i]+H, dx[i]:dx[i]+W]``, mirrored when
    ``flips[i]``; the draws are made in the order ``dy``, ``dx``, ``flips`` (on the
    generator's device), so a generator seeded the same way reproduces the batch.
    """
    b, _, h, w = x.shape
    gen_device = generator.device if generator is not None else x.device
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=gen_device).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=gen_device).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flip:
        flips = torch.rand(b, generator=generator, device=gen_device).to(x.device) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


@dataclass(frozen=True)
class CropFlip:
    """The training-time augmentation of an image dataset: ``random_crop_flip`` with the
    dataset's padding and flip setting (``DataSplits.crop_padding`` / ``.flip``)."""

    padding: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_crop_flip(x, self.padding, self.flip, generator)


def use_augmentation(cfg, data) -> CropFlip | None:
    """The dataset's crop+flip when it takes one, unless the config (``augment``) turns it off."""
    wanted = data.augmentable if cfg.augment is None else cfg.augment and data.augmentable
    return CropFlip(data.crop_padding, data.flip) if wanted else None
