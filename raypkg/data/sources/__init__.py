"""Importing this package registers every dataset builder (one module per dataset)."""

from raypkg.data.sources import (
    cifar,  # noqa: F401  (cifar10, cifar100)
    digits,  # noqa: F401
    digits_aug,  # noqa: F401
    fashion_mnist,  # noqa: F401
    imagefolder,  # noqa: F401
    mnist,  # noqa: F401
    synthetic,  # noqa: F401
)
