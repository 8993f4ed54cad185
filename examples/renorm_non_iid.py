"""Batch renorm with non-i.i.d. minibatches: the batch renorm paper, 4.3.

Reproduces: Ioffe 2017 builds each minibatch from few labels, so that batch
statistics are biased and inference, with population statistics, no longer
matches training; batch norm then suffers at test time and batch renorm
does not. Here, at a scale two CPU cores can run: ResNet-8 on the real
Fashion-MNIST (10 classes), minibatches of 128 drawn from 2 classes only
(64 images each), three arms:
  - batch norm on i.i.d. minibatches (the baseline),
  - batch norm on minibatches of 2 classes,
  - batch renorm on minibatches of 2 classes (alpha = 0.01; rmax, dmax
    held at 1, 0 for the first half of the run, then ramped to 3, 5: see
    batch_renorm.schedule.scaled_schedule),
each with 3 seeds; test accuracy in inference mode after every epoch.

    python examples/renorm_non_iid.py            # full: ~30 min on 2 cores
    python examples/renorm_non_iid.py --quick    # a few hundred steps

Writes results.json, results.md (final accuracies, mean +- std),
accuracy.png and TensorBoard logs (runs/) to --out
(default results/non_iid).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from experiment_cli import main  # noqa: E402
from resnet.experiment import Arm, Setup  # noqa: E402

ARMS = [Arm("batch norm, i.i.d.", "batch_norm"),
        Arm("batch norm, 2 classes per batch", "batch_norm", classes_per_batch=2),
        Arm("batch renorm, 2 classes per batch", "batch_renorm",
            classes_per_batch=2)]
SETUP = Setup(dataset="fashion_mnist", depth=8, batch_size=128, epochs=4)

if __name__ == "__main__":
    sys.exit(main(__doc__, ARMS, SETUP, "results/non_iid"))
