"""Each built-in model's default learning rate: what a run with no --lr trains it with.

Torch-free, so that a config reads it while the command line is built. Checked over 5
seeds on the embedded data by `effray bench defaults` (docs/results.md, "Every model at its
defaults"). 0.1 (the CIFAR ResNets' rate, He et al. 2016) trains the others; at 0.1 on
digits (30 epochs, batch 64, no warm-up):
- LeNet-5, without normalisation layers, diverged in 2 seeds of 5 (0.102 and 0.747; the
  others 0.964-0.987); at 0.03 and at 0.05 all 5 reached 0.976-0.989;
- ResNet-56 stalled at 0.458 in seed 0; at 0.05, or at 0.1 after a 2-epoch warm-up (He et
  al. warm ResNet-110 up at 0.01), it reached 0.956 and 0.958.
"""

DEFAULT_LR = 0.1
MODEL_LR = {"lenet5": 0.03, "resnet56": 0.05}


def default_lr(model: str) -> float:
    """The learning rate a run of ``model`` takes when none is given (a plug-in's: DEFAULT_LR)."""
    return MODEL_LR.get(model, DEFAULT_LR)
