"""The command line the paper-experiment scripts share
(examples/renorm_microbatch.py, examples/renorm_non_iid.py)."""
import argparse
import dataclasses
import logging

from resnet import checks, errors
from resnet.experiments import harness, report

# A smoke test: 3072 images, 2 epochs of 128 (48 steps), one seed, a point
# every 12 steps on 1000 test images; written beside the full run's folder,
# never into it.
QUICK = dict(train_images=3072, test_images=1000, epochs=2, seeds=(0,),
             eval_every=12)


def _positive(text):
    try:
        return checks.check_int("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}") from None


def main(description, arms, full_setup, default_out, argv=None, roles=None):
    """Parses argv, runs `arms` on `full_setup` (or the quick one) and
    prints the table."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="48 steps per arm and one seed (a smoke test), "
                   "written to OUT-quick")
    p.add_argument("--out", help=f"output folder (default {default_out})")
    p.add_argument("--data-dir", help="Fashion-MNIST files (default: Debian's "
                   "dataset-fashion-mnist, else downloaded)")
    p.add_argument("--seeds", type=_positive, help="how many seeds per arm "
                   f"(default {len(full_setup.seeds)}, 1 with --quick)")
    p.add_argument("--epochs", type=_positive,
                   help=f"default {full_setup.epochs}")
    p.add_argument("--arm", action="append", metavar="NAME",
                   choices=[arm.name for arm in arms],
                   help="run only this arm (repeatable; default: all of "
                   "them); the others' recorded runs are kept")
    p.add_argument("--threads", type=_positive, help="threads per op "
                   "(default: TensorFlow's choice for the step; 1 runs two "
                   "experiments side by side on two cores)")
    args = p.parse_args(argv)
    if args.arm:
        arms = [arm for arm in arms if arm.name in args.arm]
    setup = dataclasses.replace(full_setup, **QUICK) if args.quick else full_setup
    if args.epochs:
        setup = dataclasses.replace(setup, epochs=args.epochs)
    if args.seeds:
        setup = dataclasses.replace(setup, seeds=tuple(range(args.seeds)))
    out = args.out or (default_out + "-quick" if args.quick else default_out)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = harness.run(arms, setup, out, args.data_dir, roles,
                              args.threads)
    except errors.Error as error:
        status = errors.exit_status(error)
        if status == 2:
            p.error(str(error))
        p.exit(status, f"{p.prog}: {error}\n")
    summary = report.summarize(results, [arm.name for arm in arms])
    print(report.table(summary, setup, roles))
    print(f"results, plot and TensorBoard logs in {out}")
    return 0

