"""Batch renorm with microbatches, swept over the group size: the batch
renorm paper, section 4.2.

Reproduces: Ioffe 2017 keeps the gradient minibatch large (1,600 examples)
but computes the normalisation statistics over small groups
("microbatches", 4 examples), where batch norm degrades (validation
accuracy 74.2% against 78.3% on the whole batch) and batch renorm recovers
56% of the loss (76.5%). Batch norm's failure is the train/inference
mismatch: in training each example is 1/m of its own group's statistics,
in inference the population's stand in, and the smaller m the larger the
difference. Here, at a scale two CPU cores can run: ResNet-20 whose stages
start with stride 2 (maps of 14, 7 and 4 on 28x28) on the real
Fashion-MNIST, minibatches of 128 examples (the gradient over all of
them) made of normalisation groups of m = 1, 2, 4 and 8, the arms:
  - batch norm with full-batch statistics (the baseline),
  - batch norm on groups of m, also evaluated with population statistics
    recomputed over the training set (the moving averages' error) and with
    each test group's own statistics (the mismatch removed),
  - batch renorm on groups of m (alpha = 0.01; the
    batch_renorm.schedule.short_run_schedule ramp),
each with 3 seeds, 2 epochs, lr 0.1 (divided by 10 at 50% and 75%), in
float32; test accuracy in inference mode every 100 steps.

    python examples/renorm_microbatch.py            # 27 runs: hours of one core
    python examples/renorm_microbatch.py --quick    # 48 steps, one seed

Writes results.json (the arms with their group size "microbatch", the
headline's "roles": the smallest groups), results.md (final accuracies,
mean +- std, the fraction recovered), accuracy.png (the curves),
group_sizes.png (final accuracy against the group size) and TensorBoard
logs (runs/) to --out (default results/microbatch; results/microbatch-quick
with --quick).
"""
import sys

from resnet.experiments import Arm, Setup, main

GROUP_SIZES = (1, 2, 4, 8)


def arms(group_sizes=GROUP_SIZES):
    """The baseline, then batch norm and batch renorm at each group size."""
    chosen = [Arm("batch norm, full batch", "batch_norm",
                  diagnostics=("population",))]
    for m in group_sizes:
        chosen += [Arm(f"batch norm, groups of {m}", "batch_norm",
                       microbatch=m, diagnostics=("population", "batch")),
                   Arm(f"batch renorm, groups of {m}", "batch_renorm",
                       microbatch=m)]
    return chosen


ARMS = arms()
ROLES = {"baseline": ARMS[0].name, "batch_norm": ARMS[1].name,
         "batch_renorm": ARMS[2].name}
SETUP = Setup(dataset="fashion_mnist", depth=20, strides=(2, 2, 2),
              batch_size=128, epochs=2)

if __name__ == "__main__":
    sys.exit(main(__doc__, ARMS, SETUP, "results/microbatch", None, ROLES))
