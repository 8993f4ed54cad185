"""ResNet-20 with batch renorm on MNIST.

Trains a CIFAR-style ResNet-20 (He et al. 2015) on 28x28 MNIST digits for
10 epochs. Its accuracy with this recipe is unmeasured: MNIST is not on the
machines we test on (its loader is tested on files written in its format).

    python examples/mnist_resnet.py [--data-dir DIR] [--norm batch_norm] [...]

The files are downloaded into --data-dir (default ~/.cache/resnet-batch-renorm/
mnist) on first use. Any resnet-run flag may follow and overrides the
recipe; on a GPU machine (pip install ".[gpu]") it runs there unchanged.
"""
import sys

from resnet import resnet_run

RECIPE = ["--dataset", "mnist", "--depth", "20", "--norm", "batch_renorm",
          "--batch-size", "128", "--epochs", "10", "--lr", "0.1"]

if __name__ == "__main__":
    sys.exit(resnet_run.main(RECIPE + sys.argv[1:]))
