"""ResNet-50 with batch renorm on ImageNet: the setting of the batch renorm
paper (Ioffe 2017, section 5) with He et al.'s network and schedule.

Reproduces: Ioffe's data-parallel training, 50 workers of 32 images each,
every worker normalising its own 32 (per-worker statistics: the paper's
"microbatches" of section 4.2 are exactly these), the gradient averaged over
the 1,600; rmax 1 -> 3 between steps 5k and 40k, dmax 0 -> 5 between 5k and
25k. The network and its training are He et al. 2015's ImageNet recipe (the
paper trained Inception-v3 with RMSProp; its schedule is kept in steps):
ResNet-50 (25,557,032 parameters with 1,000 classes), SGD with momentum 0.9,
weight decay 1e-4, lr 0.1 per 256 images (Goyal et al. 2017's linear
scaling: 0.625 at 1,600), divided by 10 after epochs 30, 60 and 80 of 90;
random-resized 224x224 crops and flips, centre crops for evaluation.

It needs ImageNet as TFRecord shards (DIR/train-00000-of-01024, ...,
DIR/validation-00000-of-00128, written by TensorFlow's
`build_imagenet_data.py`: labels 1-1,000, so 1,001 logits) and machines:
on each of N of them, with the same --worker-hosts,

    python examples/imagenet_resnet.py --data-dir /data/imagenet \\
        --worker-hosts h0:2222,h1:2222,...,h49:2222 --task-index I \\
        --model-dir /shared/resnet50-renorm

(or --local-workers N on one machine). --per-worker-batch (default 32) and
the number of workers give the global batch, and from it the lr and the
boundaries in steps; --train-images (default ImageNet's 1,281,167) gives the
steps of an epoch. Any resnet-run flag may follow and overrides the recipe
(--dataset folder reads a folder tree instead; --norm batch_norm is the
baseline the paper compares with).
"""
import argparse
import sys

from resnet import resnet_run

IMAGENET_TRAIN_IMAGES = 1_281_167
EPOCHS, LR_EPOCHS = 90, (30, 60, 80)  # He et al. 2015; TF official r1
LR_PER_256 = 0.1  # Goyal et al. 2017: the lr grows with the batch


def recipe(workers, per_worker_batch, train_images):
    """resnet-run's flags for `workers` x `per_worker_batch` images a step."""
    batch = workers * per_worker_batch
    per_epoch = -(-train_images // batch)
    return ["--dataset", "tfrecord", "--resnet", "imagenet", "--depth", "50",
            "--norm", "batch_renorm", "--image-size", "224",
            "--batch-size", str(batch), "--epochs", str(EPOCHS),
            "--lr", f"{LR_PER_256 * batch / 256:g}",
            "--lr-boundaries", ",".join(str(epoch * per_epoch)
                                        for epoch in LR_EPOCHS),
            "--momentum", "0.9", "--weight-decay", "1e-4",
            "--rmax", "3", "--dmax", "5", "--renorm-warmup", "5000",
            "--rmax-steps", "40000", "--dmax-steps", "25000"]


def main(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--per-worker-batch", type=int, default=32)
    parser.add_argument("--train-images", type=int,
                        default=IMAGENET_TRAIN_IMAGES)
    args, rest = parser.parse_known_args(argv)
    # The workers: --worker-hosts' list, or --local-workers N, or one.
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--worker-hosts", default="")
    cluster.add_argument("--local-workers", type=int)
    found, _ = cluster.parse_known_args(rest)
    workers = (found.local_workers or
               len([h for h in found.worker_hosts.split(",") if h]) or 1)
    flags = recipe(workers, args.per_worker_batch, args.train_images)
    print(f"ResNet-50, batch renorm: {workers} worker(s) x "
          f"{args.per_worker_batch} images, lr {flags[flags.index('--lr') + 1]}"
          f", lr / 10 at steps {flags[flags.index('--lr-boundaries') + 1]}",
          flush=True)
    return resnet_run.main(flags + rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
