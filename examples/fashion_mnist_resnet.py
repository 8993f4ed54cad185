"""ResNet-20 with batch renorm on Fashion-MNIST.

Reproduces: a CIFAR-style ResNet-20 (He et al. 2015) on the 28x28
Fashion-MNIST images (Xiao et al. 2017), where ResNets reach about 93-94%
test accuracy.

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
