"""The command line the paper-experiment scripts share (see
renorm_microbatch.py and renorm_non_iid.py)."""
import argparse
import dataclasses
import logging
import sys

from resnet import resnet_run

# Before anything imports TensorFlow (the scripts import resnet.experiment
# after this module): its start-up lines stay off the terminal.
resnet_run.import_tensorflow_quietly()

from resnet import datasets, experiment  # noqa: E402
from resnet.checkpoints import ModelDirInUseError  # noqa: E402

# A smoke test: 6400 images, 2 epochs of 128 (100 steps), one seed, a point
# every 25 steps on 2000 test images; written beside the full run's folder,
# never into it.
QUICK = dict(train_images=6400, test_images=2000, epochs=2, seeds=(0,),
             eval_every=25)


def main(description, arms, full_setup, default_out, argv=None, roles=None):
    """Parses argv, runs `arms` on `full_setup` (or the quick one) and
    prints the table."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="200 steps per arm and one seed (a smoke test), "
                   "written to OUT-quick")
    p.add_argument("--out", help=f"output folder (default {default_out})")
    p.add_argument("--data-dir", help="Fashion-MNIST files (default: Debian's "
                   "dataset-fashion-mnist, else downloaded)")
    p.add_argument("--seeds", type=int, help="how many seeds per arm "
                   f"(default {len(full_setup.seeds)}, 1 with --quick)")
    p.add_argument("--epochs", type=int)
    args = p.parse_args(argv)
    setup = dataclasses.replace(full_setup, **QUICK) if args.quick else full_setup
    if args.epochs:
        setup = dataclasses.replace(setup, epochs=args.epochs)
    if args.seeds:
        setup = dataclasses.replace(setup, seeds=tuple(range(args.seeds)))
    out = args.out or (default_out + "-quick" if args.quick else default_out)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = experiment.run(arms, setup, out, args.data_dir, roles)
    except (datasets.DatasetError, experiment.SetupChangedError,
            ModelDirInUseError) as error:
        p.error(str(error))
    summary = experiment.summarize(results, [arm.name for arm in arms])
    print(experiment.table(summary, setup, roles))
    print(f"results, plot and TensorBoard logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit("run renorm_microbatch.py or renorm_non_iid.py")
