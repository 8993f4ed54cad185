"""The sweep that chose `short_run_schedule`: renorm ramps for short runs.

Each variant trains the batch renorm arm of the non-i.i.d. experiment
(2 classes per minibatch) and of the microbatch experiment (microbatches
of 4), ResNet-8 on Fashion-MNIST, 4 epochs, seed 0, at lr 0.1 and 0.02.
A variant: the warm-up (r = 1, d = 0), the steps where rmax and dmax reach
3 and 5 (T: the run's steps), and alpha (1 - the norms' momentum).

    python examples/renorm_schedule_sweep.py          # ~45 min on 2 cores
    python examples/renorm_schedule_sweep.py --variants short_run --lr 0.02

Writes one experiment folder per variant and learning rate under --out
(default results/schedule_sweep) and prints a table of final accuracies.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import experiment_cli  # noqa: E402,F401  (keeps TensorFlow's start-up quiet)
from batch_renorm.schedule import SCHEDULES  # noqa: E402
from resnet import datasets, experiment  # noqa: E402
from resnet.experiment import Arm, Setup  # noqa: E402

ARMS = [Arm("batch renorm, 2 classes per batch", "batch_renorm",
            classes_per_group=2),
        Arm("batch renorm, microbatches of 4", "batch_renorm", microbatch=4)]


def ramp(warmup, rmax_end, dmax_end):
    """A rule from the warm-up and the ramps' ends, each f(T, alpha)."""
    def rule(total, momentum):
        alpha = 1.0 - momentum
        return dict(rmax=3.0, dmax=5.0, warmup_steps=warmup(total, alpha),
                    rmax_steps=rmax_end(total, alpha),
                    dmax_steps=dmax_end(total, alpha))
    return rule


def half(total, alpha):
    return total // 2


# name: (warm-up and ramp ends, rule, momentum)
VARIANTS = {
    "half": ("T/2, T (scaled_schedule)", SCHEDULES["half"], 0.99),
    "short_run": ("3/alpha, T/2 (short_run_schedule)", SCHEDULES["short_run"],
                  0.99),
    "none": ("0, T/4", ramp(lambda t, a: 0, lambda t, a: t // 4,
                            lambda t, a: t // 4), 0.99),
    "one_memory": ("1/alpha, T/4", ramp(lambda t, a: round(1 / a),
                                        lambda t, a: t // 4,
                                        lambda t, a: t // 4), 0.99),
    "slow_rmax": ("3/alpha, rmax at T, dmax at T/2",
                  ramp(lambda t, a: round(3 / a), lambda t, a: t, half), 0.99),
    "long_ramp": ("3/alpha, 3T/4", ramp(lambda t, a: round(3 / a),
                                        lambda t, a: 3 * t // 4,
                                        lambda t, a: 3 * t // 4), 0.99),
    "late_fast": ("T/2, T/2 + 1/alpha",
                  ramp(half, lambda t, a: t // 2 + round(1 / a),
                       lambda t, a: t // 2 + round(1 / a)), 0.99),
    "late": ("3T/4, T", ramp(lambda t, a: 3 * t // 4, lambda t, a: t,
                             lambda t, a: t), 0.99),
    "alpha_0.03": ("1/alpha, T/2, alpha 0.03",
                   ramp(lambda t, a: round(1 / a), half, half), 0.97),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", choices=VARIANTS,
                   default=list(VARIANTS))
    p.add_argument("--lr", type=float, nargs="+", default=[0.1, 0.02])
    p.add_argument("--out", default="results/schedule_sweep")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.variants:
        description, rule, momentum = VARIANTS[name]
        SCHEDULES[name] = rule
        for lr in args.lr:
            setup = Setup(epochs=4, learning_rate=lr, norm_momentum=momentum,
                          seeds=(0,), schedule=name)
            try:
                results = experiment.run(ARMS, setup, os.path.join(
                    args.out, f"{name}-lr{lr}"), args.data_dir)
            except (datasets.DatasetError, ValueError) as error:
                p.error(str(error))
            finals = [results["runs"][f"{arm.name} / seed 0"]["curve"][-1]
                      ["test_accuracy"] for arm in ARMS]
            rows.append(f"| {description} | {lr} | {finals[0]:.4f} | "
                        f"{finals[1]:.4f} |")
    print("| warm-up, ramp ends | lr | 2 classes per batch | microbatches of 4 |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
