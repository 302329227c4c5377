"""LiPT's pre-training augmentation: the dataset's crop/flip, then RandAugment N=1 M=5
(Cubuk et al. 2020) per image, for diversity between the shard models (Ro et al. 2023, Sec. 3).

RandAugment is torchvision's (``transforms.v2.RandAugment``): its op table, and every image
comes out as torchvision's op makes it. Each image gets its own op and sign, drawn from the
loop's generator. Ops work on uint8 images, so a batch is rescaled to [0, 255] by its own
min and max and mapped back afterwards. The ops run batched (``OpTable``):

- an op that moves pixels (shear, translate, rotate: nearest sampling, fill 0) is a gather
  of where each output pixel comes from, read once per image size from torchvision's op on
  an image of pixel numbers;
- an op that maps each pixel by its own value (identity, brightness, posterize, solarize)
  is a lookup in 256 values, read once from torchvision's op on every value;

so one gather and one lookup serve every image that drew one of those, where torchvision
takes a call of a few hundred microseconds per op and sign (building its sampling grid each
time): on 28x28 images LiPT's pre-training takes about a quarter less time (its docs page,
"RandAugment batched"). The others (color, contrast, sharpness, autocontrast, equalize:
they depend on the image's statistics or a pixel's neighbours) are torchvision's op, on the
images that drew the same op and sign together. ``tests/unit/test_lipt.py`` holds every op
and sign equal to torchvision's, image by image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from raypkg.data.augment import CropFlip

MOVES = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BY_VALUE = ("Identity", "Brightness", "Posterize", "Solarize")


@functools.cache
def randaugment():
    """torchvision's RandAugment, N=1: its op table (``_AUGMENTATION_SPACE``) and ops."""
    from torchvision.transforms.v2 import RandAugment

    return RandAugment(num_ops=1)


def torchvision_op(images: torch.Tensor, name: str, value: float) -> torch.Tensor:
    """torchvision's RandAugment op ``name`` at ``value`` on ``images`` [B, C, H, W]."""
    ra = randaugment()
    return ra._apply_image_or_video_transform(images, name, value, interpolation=ra.interpolation, fill=ra._fill)


@dataclass(frozen=True)
class OpTable:
    """RandAugment's ops at one magnitude for one image size, numbered 2 x the op's place in
    torchvision's table + 1 when negated (an unsigned op: never). For each number: the op
    and its value; for those done batched (``batched``), the pixel each output pixel comes
    from (``sources``: 1 + its index, 0 outside the image) and what each uint8 value becomes
    (``values``); the identity in both for the rest."""

    ops: list[tuple[str, float]]
    signed: torch.Tensor  # bool, per op of the table
    batched: torch.Tensor  # bool, per number
    sources: torch.Tensor  # [numbers, H * W] long, on the images' device
    values: torch.Tensor  # [numbers, 256] uint8, on the images' device

    @staticmethod
    @functools.cache
    def of(height: int, width: int, magnitude: int, num_bins: int = 31, device: str = "cpu") -> "OpTable":
        space = list(randaugment()._AUGMENTATION_SPACE.items())
        numbers = torch.arange(1, height * width + 1, dtype=torch.float32).reshape(1, 1, height, width)
        every_value = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
        ops, signed, sources, values = [], [], [], []
        for name, (magnitudes_fn, is_signed) in space:
            magnitudes = magnitudes_fn(num_bins, height, width)
            signed.append(is_signed and magnitudes is not None)
            for negated in (False, True):
                sign = -1 if negated and signed[-1] else 1
                value = 0.0 if magnitudes is None else sign * float(magnitudes[magnitude])
                ops.append((name, value))
                # nearest sampling copies a pixel's number exactly; 0 is torchvision's fill
                moved = torchvision_op(numbers, name, value) if name in MOVES else numbers
                sources.append(moved.reshape(-1).round().long())
                mapped = torchvision_op(every_value, name, value) if name in BY_VALUE else every_value
                values.append(mapped.reshape(-1))
        return OpTable(ops, torch.tensor(signed), torch.tensor([name in MOVES + BY_VALUE for name, _ in ops]),
                       torch.stack(sources).to(device), torch.stack(values).to(device))

    def number(self, ops: torch.Tensor, negated: torch.Tensor) -> torch.Tensor:
        """Each image's number, from its op's place in the table and its sign (on the CPU)."""
        return ops * 2 + (negated & self.signed[ops]).long()

    def apply(self, images: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """Op ``numbers[i]`` (on the CPU) on uint8 image ``images[i]`` [B, C, H, W], each as
        torchvision's op makes it alone."""
        b, c, h, w = images.shape
        on_device = numbers.to(images.device)
        sources, values = self.sources[on_device], self.values[on_device]
        numbered = torch.cat([images.new_zeros(b, c, 1), images.reshape(b, c, h * w)], dim=2)
        moved = numbered.gather(2, sources.unsqueeze(1).expand(b, c, h * w))
        out = values.gather(1, moved.reshape(b, c * h * w).long()).reshape(b, c, h, w)
        for number in numbers[~self.batched[numbers]].unique().tolist():
            where = (numbers == number).nonzero().flatten().to(images.device)
            out[where] = torchvision_op(images[where], *self.ops[number])
        return out


def rand_augment(x: torch.Tensor, magnitude: int = 5, generator: torch.Generator | None = None,
                 num_bins: int = 31) -> torch.Tensor:
    """One RandAugment op (N=1) of magnitude bin ``magnitude`` on every image of [B, C, H, W]."""
    table = OpTable.of(x.shape[2], x.shape[3], magnitude, num_bins, str(x.device))
    b = x.shape[0]
    gen_device = generator.device if generator is not None else torch.device("cpu")
    ops = torch.randint(len(table.signed), (b,), generator=generator, device=gen_device).cpu()
    negated = (torch.rand(b, generator=generator, device=gen_device) <= 0.5).cpu()
    lo, hi = x.min(), x.max()
    scale = torch.clamp(hi - lo, min=1e-12)
    images = ((x - lo) / scale * 255).round().to(torch.uint8)
    out = table.apply(images, table.number(ops, negated))
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
