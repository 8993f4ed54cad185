"""Batch renorm with non-i.i.d. minibatches: the batch renorm paper, 4.3.

Reproduces: Ioffe 2017 builds each minibatch from few labels, so that batch
statistics are biased and inference, with population statistics, no longer
matches training; batch norm then suffers at test time and batch renorm
does not. Here, at a scale two CPU cores can run: ResNet-8 on the real
Fashion-MNIST (10 classes), minibatches of 128 drawn from 2 classes only
(64 images each; --classes-per-batch 5 for a milder case: minibatches of
125, 25 images of each of 5 classes), three arms:
  - batch norm on i.i.d. minibatches (the baseline),
  - batch norm on minibatches of 2 classes,
  - batch renorm on minibatches of 2 classes (alpha = 0.01; the
    batch_renorm.schedule.short_run_schedule ramp),
each with 3 seeds, learning rate 0.02 for all arms (at 0.1 the 2-class
minibatches keep SGD from converging in any arm; see README "Results");
test accuracy in inference mode every 100 steps.

    python examples/renorm_non_iid.py            # full: ~12 min on 2 cores
    python examples/renorm_non_iid.py --classes-per-batch 5
    python examples/renorm_non_iid.py --quick    # 200 steps, one seed

Writes results.json, results.md (final accuracies, mean +- std),
accuracy.png and TensorBoard logs (runs/) to --out (default
results/non_iid, results/non_iid_5 for 5 classes; OUT-quick with --quick).
"""
import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from experiment_cli import main  # noqa: E402
from resnet.experiment import Arm, Setup  # noqa: E402

SETUP = Setup(dataset="fashion_mnist", depth=8, batch_size=128, epochs=4,
              learning_rate=0.02)


def arms(classes):
    per_batch = f"{classes} classes per batch"
    return [Arm("batch norm, i.i.d.", "batch_norm"),
            Arm(f"batch norm, {per_batch}", "batch_norm",
                classes_per_batch=classes),
            Arm(f"batch renorm, {per_batch}", "batch_renorm",
                classes_per_batch=classes)]


if __name__ == "__main__":
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--classes-per-batch", type=int, default=2,
                   choices=range(2, 10), metavar="{2..9}")
    known, rest = p.parse_known_args()
    classes = known.classes_per_batch
    # Equal parts per class: 128 for 2 classes, 125 for 5.
    setup = dataclasses.replace(SETUP, batch_size=128 // classes * classes)
    sys.exit(main(__doc__, arms(classes), setup,
                  "results/non_iid" + ("" if classes == 2 else f"_{classes}"),
                  rest))
