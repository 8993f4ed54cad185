"""ResNet on CIFAR-10 with the recipe of He et al. 2015, section 4.2.

Reproduces: the CIFAR-10 ResNets of the paper: batch 128, SGD with momentum
0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k steps, stop at
64k steps (182 epochs of 45k images), a 45k/5k train/validation split,
4-pixel padding, random 32x32 crops and horizontal flips. The paper's test
error for ResNet-20 is 8.75%. Here the norm is batch renorm by default
(--norm batch_norm for the paper's exact setting). The accuracy printed is
the one on the 5k validation images, on which the paper chose its schedule;
--validation 0 trains on all 50k and tests on the test set.

    python examples/cifar10_resnet.py --data-dir ~/data [--depth 56]

The python version of CIFAR-10 is downloaded into --data-dir on first use.
Any resnet-run flag may follow and overrides the recipe; on a GPU machine
(pip install ".[gpu]") it runs there unchanged.
"""
import sys

from resnet import resnet_run

RECIPE = ["--dataset", "cifar10", "--depth", "20", "--norm", "batch_renorm",
          "--batch-size", "128", "--epochs", "182", "--validation", "5000",
          "--lr", "0.1", "--lr-boundaries", "32000,48000",
          "--momentum", "0.9", "--weight-decay", "1e-4", "--augment"]

if __name__ == "__main__":
    sys.exit(resnet_run.main(RECIPE + sys.argv[1:]))
