"""Each built-in model's default learning rate: what a run with no --lr trains it with.

Torch-free, so that a config reads it while the command line is built. Checked over 5
seeds on the embedded data by ``tests/test_models.py`` and docs/models.md (the command is
there): 0.1 (the CIFAR ResNets' rate, He et al. 2016) trains every model but LeNet-5,
which has no normalisation layer and at 0.1 diverged to chance in 1 seed of 5 on digits
(and on a 5,000-image MNIST sample); at 0.03 all 5 reached 0.976-0.989.
"""

DEFAULT_LR = 0.1
MODEL_LR = {"lenet5": 0.03}


def default_lr(model: str) -> float:
    """The learning rate a run of ``model`` takes when none is given (a plug-in's: DEFAULT_LR)."""
    return MODEL_LR.get(model, DEFAULT_LR)
