"""ResNet-20 with batch renorm on Fashion-MNIST.

Trains a CIFAR-style ResNet-20 (He et al. 2015) on the 28x28 Fashion-MNIST
images (Xiao et al. 2017) for 20 epochs. Measured (seed 0, 2026-11-27, 2
cores of an Intel Xeon with AMX, bfloat16): test accuracy 0.9290, in 13
minutes alone on the machine (0.9306 before batch renorm normalised with
the fused kernel in inference mode: the same formula, other rounding).

    python examples/fashion_mnist_resnet.py [--epochs N] [--norm batch_norm]

Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) is used
when installed, else the files are downloaded into --data-dir. Any
resnet-run flag may follow and overrides the recipe; on a GPU machine
(pip install ".[gpu]") it runs there unchanged.
"""
import sys

from resnet import resnet_run

RECIPE = ["--dataset", "fashion_mnist", "--depth", "20",
          "--norm", "batch_renorm", "--batch-size", "128", "--epochs", "20",
          "--lr", "0.1"]

if __name__ == "__main__":
    sys.exit(resnet_run.main(RECIPE + sys.argv[1:]))
