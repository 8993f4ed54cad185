"""Batch renorm with microbatches: the batch renorm paper, section 4.2.

Reproduces: Ioffe 2017 keeps the gradient minibatch large but computes the
normalisation statistics over small groups ("microbatches"), where batch
norm degrades and batch renorm recovers most of the loss (at this scale
batch norm barely degrades: README "Results"). Here, at a scale
two CPU cores can run: ResNet-8 on the real Fashion-MNIST, minibatches of
128 examples, three arms:
  - batch norm with full-batch statistics (the baseline),
  - batch norm with microbatches of 4,
  - batch renorm with microbatches of 4 (alpha = 0.01; the
    batch_renorm.schedule.short_run_schedule ramp),
each with 3 seeds; test accuracy in inference mode every 100 steps.

    python examples/renorm_microbatch.py            # full: ~12 min on 2 cores
    python examples/renorm_microbatch.py --quick    # 200 steps, one seed

Writes results.json, results.md (final accuracies, mean +- std),
accuracy.png and TensorBoard logs (runs/) to --out
(default results/microbatch; results/microbatch-quick with --quick).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from experiment_cli import main  # noqa: E402
from resnet.experiment import Arm, Setup  # noqa: E402

ARMS = [Arm("batch norm, full batch", "batch_norm"),
        Arm("batch norm, microbatches of 4", "batch_norm", microbatch=4),
        Arm("batch renorm, microbatches of 4", "batch_renorm", microbatch=4)]
SETUP = Setup(dataset="fashion_mnist", depth=8, batch_size=128, epochs=4)

if __name__ == "__main__":
    sys.exit(main(__doc__, ARMS, SETUP, "results/microbatch"))
