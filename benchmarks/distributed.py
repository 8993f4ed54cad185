"""Data-parallel training on this machine: two local workers with one
intra-op thread each against one process with two, for ResNet-20 on
in-memory 32x32x3 images (training images/s through `ConvolutionNN.train`,
the second epoch of each run).

    python -m benchmarks.distributed            # ~3 min on 2 cores
    python -m benchmarks.distributed --rounds 1 --images 2048

A 2-core machine cannot show scaling: the workers share the cores, so the
ratio is the overhead of the all-reduces and of two processes. The cases
take turns, round by round; ratios are per round (median, min-max).
Also prints the bytes each step all-reduces for ResNet-20/56/110.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {  # name: (workers, intra-op threads, inter-op threads, sync)
    "one process x 2 threads": (1, 2, 2, False),
    "2 workers x 1 thread": (2, 1, 2, False),
    "2 workers x 1 thread, sync statistics": (2, 1, 2, True),
}


def worker(args):
    """One process of a case: prints the second epoch's images/s."""
    import numpy as np
    from resnet import models
    from resnet.data import datasets
    from resnet.runtime.cluster import Cluster
    from resnet.convolution_nn import ConvolutionNN
    from resnet.runtime.session_config import session_config

    rng = np.random.RandomState(0)
    x = rng.rand(args.images, 32, 32, 3).astype(np.float32)
    y = rng.randint(0, 10, args.images).astype(np.int64)
    ds = datasets.Dataset("random", x, y, x[:256], y[:256], 10)
    cluster = (Cluster(tuple(args.hosts.split(",")), args.task)
               if args.hosts else None)
    with ConvolutionNN(models.resnet(20, 10, norm="batch_renorm"), ds,
                       progress=False, cluster=cluster,
                       sync_statistics=args.sync, augment=True,
                       session_config=session_config(
                           intra_threads=args.threads,
                           inter_threads=args.inter,
                           precision=args.precision)) as cnn:
        history = cnn.train(args.batch, 2)
    print(json.dumps({"images_per_second": history[-1]["images_per_second"]}))


def run_case(name, args):
    from resnet.runtime.cluster import free_ports
    workers, threads, inter, sync = CASES[name]
    hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(workers)) \
        if workers > 1 else ""
    common = [sys.executable, "-m", "benchmarks.distributed", "--worker",
              "--threads", str(threads), "--inter", str(inter),
              "--images", str(args.images),
              "--batch", str(args.batch), "--precision", args.precision]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    processes = [subprocess.Popen(
        common + (["--hosts", hosts, "--task", str(task)] if hosts else [])
        + (["--sync"] if sync else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT)
        for task in range(workers)]
    outputs = [p.communicate() for p in processes]
    for process, (_, stderr) in zip(processes, outputs):
        if process.returncode:
            sys.exit(f"{name} failed:\n{stderr[-3000:]}")
    # The chief reports the global batch's images/s.
    return json.loads(outputs[0][0].splitlines()[-1])["images_per_second"]


def all_reduced_bytes(depth):
    """Bytes one training step all-reduces per worker: the gradients and
    the norms' mean and std (per-worker statistics), packed into one
    collective, and with synchronized statistics each norm's sums forward
    and backward, four collectives per norm, one after another."""
    import tensorflow as tf
    from batch_renorm import norm_layers
    from resnet import models
    graph = tf.Graph()
    with graph.as_default():
        models.resnet(depth, 10, norm="batch_renorm")(
            tf.compat.v1.placeholder(tf.float32, [None, 32, 32, 3]), True)
        weights = sum(v.shape.num_elements()
                      for v in tf.compat.v1.trainable_variables())
        channels = sum(layer.gamma.shape.num_elements()
                       for layer in norm_layers())
    return {"depth": depth, "parameters": weights, "norm_channels": channels,
            "gradients_bytes": 4 * weights,
            "statistics_bytes": 4 * 2 * channels,
            "sync_statistics_bytes": 4 * 4 * channels,
            "collectives_per_step": 1,
            "sync_collectives_per_step": 1 + 4 * len(norm_layers(graph))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", default="float32",
                   choices=("auto", "float32", "bfloat16"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--inter", type=int, help=argparse.SUPPRESS)
    p.add_argument("--hosts", help=argparse.SUPPRESS)
    p.add_argument("--task", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    from resnet.runtime.session_config import cpu_description
    print(f"# {cpu_description()}; ResNet-20 batch renorm, global "
          f"batch {args.batch}, {args.precision}")
    rates = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name in CASES:
            rates[name].append(run_case(name, args))
            print(f"{name:>40}: {rates[name][-1]:7.1f} img/s", flush=True)
    base = rates["one process x 2 threads"]
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, base)]
        print(f"{name:>40}: median {statistics.median(values):7.1f} img/s, "
              f"throughput / one process {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})")
    for depth in (20, 56, 110):
        print(json.dumps(all_reduced_bytes(depth)))


if __name__ == "__main__":
    main()
