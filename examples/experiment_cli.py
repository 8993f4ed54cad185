"""The command line the paper-experiment scripts share (see
renorm_microbatch.py and renorm_non_iid.py)."""
import argparse
import dataclasses
import logging
import sys

from resnet import datasets, experiment, resnet_run

# A few hundred steps per arm: 6400 images, 4 epochs of 128 (200 steps).
QUICK = dict(train_images=6400, epochs=4)


def main(description, arms, full_setup, default_out, argv=None):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a few hundred steps per arm (a smoke test)")
    p.add_argument("--out", default=default_out, help="output folder")
    p.add_argument("--data-dir", help="Fashion-MNIST files (default: Debian's "
                   "dataset-fashion-mnist, else downloaded)")
    p.add_argument("--seeds", type=int, help="how many seeds per arm "
                   f"(default {len(full_setup.seeds)})")
    p.add_argument("--epochs", type=int)
    args = p.parse_args(argv)
    setup = dataclasses.replace(full_setup, **QUICK) if args.quick else full_setup
    if args.epochs:
        setup = dataclasses.replace(setup, epochs=args.epochs)
    if args.seeds:
        setup = dataclasses.replace(setup, seeds=tuple(range(args.seeds)))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resnet_run.import_tensorflow_quietly()
    try:
        results = experiment.run(arms, setup, args.out, args.data_dir)
    except datasets.DatasetError as error:
        p.error(str(error))
    summary = experiment.summarize(results, [arm.name for arm in arms])
    print(experiment.table(summary, setup))
    print(f"results, plot and TensorBoard logs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit("run renorm_microbatch.py or renorm_non_iid.py")
