"""One worker of a test cluster (or, with --workers 0, the one-process
oracle): trains a small ResNet on a slice of digits and writes every
variable to OUT.npz.

    python -m tests.distributed_worker OUT --workers 127.0.0.1:p0,127.0.0.1:p1 --task 0
"""
import argparse
import dataclasses
import json
import logging
import sys
import time

import numpy as np


def save(cnn, path):
    """Every global variable of `cnn` to PATH.npz ("/" written as "|")."""
    variables = cnn.graph.get_collection("variables")
    values = cnn.session.run(variables)
    np.savez(path, **{v.op.name.replace("/", "|"): value
                      for v, value in zip(variables, values)})


def sleep_after_each_step(seconds):
    """A hook that sleeps after each step (a slow run, to be killed)."""
    import tensorflow as tf

    class Sleep(tf.compat.v1.train.SessionRunHook):
        def after_run(self, run_context, run_values):
            time.sleep(seconds)

    return Sleep()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--workers", default="")
    p.add_argument("--task", type=int, default=0)
    p.add_argument("--norm", default="batch_renorm")
    p.add_argument("--microbatch", type=int)
    p.add_argument("--sync-statistics", action="store_true")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--model-dir")
    p.add_argument("--checkpoint-steps", type=int)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--step-sleep", type=float, default=0.0,
                   help="seconds to sleep after each step (to be killed)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import tensorflow as tf
    from resnet import models
    from resnet.data import datasets
    from resnet.runtime.cluster import Cluster
    from resnet.convolution_nn import ConvolutionNN
    from resnet.runtime.session_config import session_config

    ds = datasets.load("digits")
    # 1024 training images: every batch of 64 splits in two, and in
    # microbatches of 32.
    ds = dataclasses.replace(ds, x_train=ds.x_train[:1024],
                             y_train=ds.y_train[:1024])
    # r and d from the first step on, clipped at 1.5 and 0.5.
    network = models.resnet(8, 10, norm=args.norm, norm_momentum=0.9,
                            microbatch=args.microbatch,
                            renorm_schedule=dict(rmax=1.5, dmax=0.5,
                                                 warmup_steps=0, rmax_steps=0,
                                                 dmax_steps=0))
    cluster = (Cluster(tuple(args.workers.split(",")), args.task,
                       timeout=args.timeout, start_timeout=120.0)
               if args.workers else None)
    with ConvolutionNN(network, ds, progress=False, cluster=cluster,
                       learning_rate=args.lr,
                       sync_statistics=args.sync_statistics,
                       model_dir=args.model_dir,
                       checkpoint_steps=args.checkpoint_steps,
                       session_config=session_config(
                           intra_threads=1, inter_threads=2,
                           precision="float32")) as cnn:
        save(cnn, args.out + "-start")
        history = cnn.train(
            args.batch_size, args.epochs - cnn.epochs_done,
            hooks=[sleep_after_each_step(args.step_sleep)]
            if args.step_sleep else [])
        save(cnn, args.out)
        print(json.dumps({"history": history}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
