"""Each built-in model's default learning rate: what a run with no --lr trains it with.

Torch-free, so that a config reads it while the command line is built. Checked over 5
seeds on the embedded data by `effray bench defaults` (docs/results.md, "Every model at its
defaults"): each model of its default list reached 0.94 or more in every seed. 0.1 (the CIFAR ResNets' rate,
He et al. 2016) trains the others; at 0.1 on digits (30 epochs, batch 64, no warm-up;
`effray bench defaults --models lenet5,resnet56 --lr 0.1`):
- LeNet-5 and ResNet-56 are kept lower from a run (2026-11-26, a tree with unrecorded
  changes) in which LeNet-5 diverged to chance in 3 seeds of 5 and ResNet-56 stalled in 2.
  Rerun at a clean commit (2026-11-28) both trained every seed at 0.1 (LeNet-5 0.969-0.984,
  also with torch's AVX2 kernels; ResNet-56 0.956-0.971), so on digits the lower rates are
  a margin, not a need;
- on an H100 (bf16), ResNet-34 stalled at 0.50-0.93 in 4 seeds of 5 and ResNet-50 at
  0.51-0.86 in all 5. Each takes the largest rate tried that trained every seed: ResNet-34
  0.05 (0.02 also did), ResNet-50 0.01 (0.05 and 0.02 did not; 0.005 did).
"""

DEFAULT_LR = 0.1
MODEL_LR = {"lenet5": 0.03, "resnet34": 0.05, "resnet50": 0.01, "resnet56": 0.05}


def default_lr(model: str) -> float:
    """The learning rate a run of ``model`` takes when none is given (a plug-in's: DEFAULT_LR)."""
    return MODEL_LR.get(model, DEFAULT_LR)
