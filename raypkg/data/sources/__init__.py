"""Importing this package registers every dataset builder (one module per dataset)."""

from raypkg.data.sources import cifar  # noqa: F401  (cifar10, cifar100)
from raypkg.data.sources import digits  # noqa: F401
from raypkg.data.sources import digits_aug  # noqa: F401
from raypkg.data.sources import imagefolder  # noqa: F401
from raypkg.data.sources import mnist  # noqa: F401
from raypkg.data.sources import synthetic  # noqa: F401
