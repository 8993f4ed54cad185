"""Batch renorm with microbatches: the batch renorm paper, section 4.2.

Reproduces: Ioffe 2017 keeps the gradient minibatch large (1,600 examples)
but computes the normalisation statistics over small groups
("microbatches", 4 examples), where batch norm degrades and batch renorm
recovers most of the loss (56%). Here, at a scale two CPU cores can run:
ResNet-20 whose stages start with stride 2 (maps of 14, 7 and 4 on 28x28:
small late maps, where a group's statistics are noisiest) on the real
Fashion-MNIST, minibatches of 128 examples, the arms:
  - batch norm with full-batch statistics (the baseline),
  - batch norm with microbatches of 2, also evaluated with population
    statistics recomputed over the training set (a diagnostic that tells
    the moving averages' error from the train/test mismatch),
  - batch renorm with microbatches of 2 (alpha = 0.01; the
    batch_renorm.schedule.short_run_schedule ramp),
  - batch norm and batch renorm with microbatches of 4 (a second point),
each with 3 seeds, lr 0.1; test accuracy in inference mode every 100 steps.

    python examples/renorm_microbatch.py            # 13 runs: ~95 min on one busy core
    python examples/renorm_microbatch.py --quick    # 100 steps, one seed

Writes results.json (with the arms' "roles"), results.md (final
accuracies, mean +- std, the fraction recovered), accuracy.png and
TensorBoard logs (runs/) to --out (default results/microbatch;
results/microbatch-quick with --quick).
"""
import sys

from resnet.experiments import Arm, Setup, main

ARMS = [Arm("batch norm, full batch", "batch_norm"),
        Arm("batch norm, microbatches of 2", "batch_norm", microbatch=2,
            diagnostics=("population",)),
        Arm("batch renorm, microbatches of 2", "batch_renorm", microbatch=2),
        Arm("batch renorm, microbatches of 2, rmax 1.5, dmax 0.5",
            "batch_renorm", microbatch=2, rmax=1.5, dmax=0.5),
        Arm("batch renorm, microbatches of 2, the paper's proportions",
            "batch_renorm", microbatch=2, schedule="proportional"),
        Arm("batch norm, microbatches of 4", "batch_norm", microbatch=4),
        Arm("batch renorm, microbatches of 4", "batch_renorm", microbatch=4)]
ROLES = {"baseline": ARMS[0].name, "batch_norm": ARMS[1].name,
         "batch_renorm": ARMS[2].name}
SETUP = Setup(dataset="fashion_mnist", depth=20, strides=(2, 2, 2),
              batch_size=128, epochs=2)

if __name__ == "__main__":
    sys.exit(main(__doc__, ARMS, SETUP, "results/microbatch", None, ROLES))
