"""ResNet on CIFAR-10 with the recipe of He et al. 2015, section 4.2.

Reproduces: the CIFAR-10 ResNets of the paper's table 6: batch 128, SGD with
momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k steps,
stop at 64k steps (182 epochs of 45k images), a 45k/5k train/validation
split, 4-pixel padding, random 32x32 crops and horizontal flips. --preset
picks the depth and prints the paper's test error:

    python examples/cifar10_resnet.py --data-dir ~/data --preset resnet56

    preset      resnet20  resnet32  resnet44  resnet56  resnet110
    test error  8.75%     7.51%     7.17%     6.97%     6.43%

The norm is batch renorm by default (--norm batch_norm for the paper's exact
setting). The accuracy printed is the one on the 5k validation images, on
which the paper chose its schedule; --validation 0 trains on all 50k and
tests on the test set. The python version of CIFAR-10 is downloaded into
--data-dir on first use. Any resnet-run flag may follow and overrides the
recipe; on a GPU machine (pip install ".[gpu]") it runs there unchanged.
"""
import argparse
import sys

from resnet import resnet_run

# He et al. 2015, table 6: depth and test error (%) of each CIFAR-10 ResNet.
PRESETS = {"resnet20": (20, 8.75), "resnet32": (32, 7.51),
           "resnet44": (44, 7.17), "resnet56": (56, 6.97),
           "resnet110": (110, 6.43)}

RECIPE = ["--dataset", "cifar10", "--norm", "batch_renorm",
          "--batch-size", "128", "--epochs", "182", "--validation", "5000",
          "--lr", "0.1", "--lr-boundaries", "32000,48000",
          "--momentum", "0.9", "--weight-decay", "1e-4", "--augment"]


def main(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", choices=PRESETS, default="resnet20")
    args, rest = parser.parse_known_args(argv)
    depth, error = PRESETS[args.preset]
    print(f"{args.preset}: the paper's CIFAR-10 test error is {error}% "
          f"(accuracy {100 - error:.2f}%)", flush=True)
    return resnet_run.main(RECIPE + ["--depth", str(depth)] + rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
