"""Training and inference throughput of the CIFAR ResNets on this machine.

    python benchmarks/throughput.py --memory     # the full table, ~10 min on 2 cores
    python benchmarks/throughput.py --quick      # ResNet-20 at batch 128 only
    python benchmarks/throughput.py --depth 20 --norm batch_renorm --batch 8

Prints the machine and TensorFlow settings, a table, and one JSON line per
case: images/s (median of the timed repeats, and their min and max) of a
training step and of inference, with the input generated in the graph
("synthetic": compute only) or read through ConvolutionNN's input pipeline
from in-memory 32x32x3 data with the CIFAR augmentation ("pipeline").
--memory also measures the peak resident memory of training ResNet-110.
"""
import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from batch_renorm import global_step  # noqa: E402
from resnet import models, training  # noqa: E402
from resnet.input_pipeline import TrainInput  # noqa: E402
from resnet.session_config import cpu_has_bfloat16, session_config  # noqa: E402

tf1 = tf.compat.v1
IMAGE_SHAPE = (32, 32, 3)
PIPELINE_IMAGES = 4096  # in-memory images for the pipeline cases


def build(depth, norm, batch, input_kind, mode, seed=0):
    """A graph and the op one timed step runs."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        _, increment = global_step()
        network = models.resnet(depth, 10, norm=norm)
        pipeline = None
        if input_kind == "synthetic":
            images = tf.random.uniform([batch, *IMAGE_SHAPE])
            labels = tf.random.uniform([batch], 0, 10, tf.int64)
        else:
            rng = np.random.RandomState(seed)
            pipeline = TrainInput(
                rng.rand(PIPELINE_IMAGES, *IMAGE_SHAPE).astype(np.float32),
                rng.randint(0, 10, PIPELINE_IMAGES).astype(np.int64),
                seed, augment=True)
            images, labels = pipeline.images, pipeline.labels
        logits = network(images, training=mode == "train")
        if mode == "train":
            loss, _ = training.classification_loss(logits, labels, 1e-4)
            step = training.train_op(loss, 0.01, 0.9, increment)
        else:
            step = tf.reduce_sum(logits)
        init = tf1.global_variables_initializer()
    return graph, init, step, pipeline


def measure(depth, norm, batch, input_kind, mode, config, steps, repeats,
            warmup=5):
    graph, init, step, pipeline = build(depth, norm, batch, input_kind, mode)
    with tf1.Session(graph=graph, config=config) as session:
        session.run(init)
        if pipeline:
            pipeline.load(session)
            # One long epoch: enough batches for warm-up and every repeat.
            pipeline.start_epoch(session, 0, batch, 0, 0)
        for _ in range(warmup):
            session.run(step)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                session.run(step)
            rates.append(batch * steps / (time.perf_counter() - start))
    return {"depth": depth, "norm": norm or "none", "batch": batch,
            "input": input_kind, "mode": mode,
            "images_per_second": round(statistics.median(rates), 1),
            "min": round(min(rates), 1), "max": round(max(rates), 1),
            "steps": steps, "repeats": repeats}


def peak_memory_mib(depth=110, batch=128, steps=3):
    """Peak RSS of a fresh process training ResNet-`depth` for a few steps."""
    code = (f"import sys; sys.argv=['x']; from benchmarks.throughput import measure;"
            f"from resnet.session_config import session_config;"
            f"measure({depth}, 'batch_renorm', {batch}, 'synthetic', 'train',"
            f" session_config(), {steps}, 1, warmup=1)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env=dict(os.environ, PYTHONPATH=root))
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def machine():
    cpu = next((line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, nargs="+", default=[20, 56])
    p.add_argument("--norm", nargs="+", default=["none", "batch_norm", "batch_renorm"])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8])
    p.add_argument("--input", nargs="+", default=["synthetic", "pipeline"])
    p.add_argument("--mode", nargs="+", default=["train", "inference"])
    p.add_argument("--images", type=int, default=1024,
                   help="images per timed repeat (default 1024)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="auto",
                   choices=("auto", "float32", "bfloat16"))
    p.add_argument("--xla", action="store_true")
    p.add_argument("--intra-threads", type=int)
    p.add_argument("--inter-threads", type=int)
    p.add_argument("--memory", action="store_true",
                   help="also the peak memory of training ResNet-110")
    p.add_argument("--quick", action="store_true",
                   help="ResNet-20, batch 128, synthetic input only")
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.batch, args.input = [20], [128], ["synthetic"]
    config = session_config(args.intra_threads, args.inter_threads,
                            args.precision, args.xla)
    settings = dict(machine(), intra_threads=config.intra_op_parallelism_threads,
                    inter_threads=config.inter_op_parallelism_threads,
                    precision=args.precision, xla=args.xla,
                    bfloat16_native=cpu_has_bfloat16())
    print("# " + json.dumps(settings))
    print(f"{'depth':>5} {'norm':>12} {'batch':>5} {'input':>9} {'mode':>9} "
          f"{'img/s':>8} {'min':>8} {'max':>8}")
    results = []
    for depth, batch, input_kind, mode, norm in itertools.product(
            args.depth, args.batch, args.input, args.mode, args.norm):
        if mode == "inference" and input_kind == "pipeline":
            continue  # inference reads no training pipeline
        norm = None if norm == "none" else norm
        steps = max(2, args.images // batch)
        result = measure(depth, norm, batch, input_kind, mode, config, steps,
                         args.repeats)
        results.append(result)
        print(f"{depth:>5} {result['norm']:>12} {batch:>5} {input_kind:>9} "
              f"{mode:>9} {result['images_per_second']:>8.1f} "
              f"{result['min']:>8.1f} {result['max']:>8.1f}", flush=True)
    for result in results:
        print(json.dumps(dict(result, **{k: settings[k] for k in ("precision", "xla")})))
    if args.memory:
        print(json.dumps({"peak_rss_mib_resnet110_train_batch128":
                          round(peak_memory_mib(), 1)}))


if __name__ == "__main__":
    main()
