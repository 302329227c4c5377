"""Importing this package registers every model builder (one module per family).

The import order is the order ``effray models`` lists them: small to large.
"""

# isort: off
from raypkg.models.zoo import mlp  # noqa: F401  logreg, mlp, lenet300-100
from raypkg.models.zoo import lenet  # noqa: F401  lenet5
from raypkg.models.zoo import resnet_cifar  # noqa: F401  resnet20/32/56, resnet18/34
from raypkg.models.zoo import wide_resnet  # noqa: F401  wrn-16-8, wrn-22-8, wrn-28-2
from raypkg.models.zoo import vgg  # noqa: F401  vgg-c
from raypkg.models.zoo import torchvision_models  # noqa: F401  resnet50
# isort: on
