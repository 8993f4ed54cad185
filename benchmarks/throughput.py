"""Training and inference throughput of the CIFAR ResNets on this machine.

    python -m benchmarks.throughput --memory     # the full table, 5 min on 2 Xeon cores
    python -m benchmarks.throughput --quick      # ResNet-20 at batch 128 only
    python -m benchmarks.throughput --depth 20 --norm batch_renorm --batch 8
    python -m benchmarks.throughput --loop --depth 20 --norm batch_renorm

Prints the machine and TensorFlow settings, a table, and one JSON line per
case: images/s (median of the timed repeats, and their min and max) of a
training step and of inference, with the input generated in the graph
("synthetic": compute only) or read through ConvolutionNN's input pipeline
from in-memory 32x32x3 data with the CIFAR augmentation ("pipeline"), or
without it ("memory", what benchmarks/peers.py feeds every framework), or
from the same images as PNG files in a folder tree, decoded, random-crop
resized and flipped in the graph ("files", `resnet.data.files`).
--loop times ConvolutionNN.train itself (augmentation, hooks) against the
compute-only step instead.
All cases of a depth and batch size run in one fresh process (TensorFlow
keeps the intra-op threads of a process's first session), with the threads
resnet-run would pick for the step, each case in its own open session; they
take turns step by step, and the step time ratios of batch renorm to batch
norm and of the pipeline to synthetic input are taken round by round, so
that the machine's slow and fast spells cancel out of them.
--memory also measures the peak resident memory of training ResNet-110.
"""
import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from resnet import models  # noqa: E402  (before TensorFlow: its oneDNN setting)
import tensorflow as tf  # noqa: E402
from resnet.train import graphs
from resnet.train import config as training
from resnet.data.input_pipeline import TrainInput  # noqa: E402
from batch_renorm.cpu import has_bfloat16  # noqa: E402
from resnet.runtime.session_config import (  # noqa: E402
    cpu_description, onednn_enabled, session_config, use_threads)

tf1 = tf.compat.v1
IMAGE_SHAPE = (32, 32, 3)
PIPELINE_IMAGES = 4096  # in-memory images for the pipeline cases
CONFIG = training.TrainConfig(learning_rate=0.01, momentum=0.9,
                              weight_decay=1e-4)


def build(depth, norm, batch, input_kind, mode, data_format="NHWC", seed=0,
          with_inference=False, data=None):
    """A graph, the op one timed step runs, the input pipeline (or None)
    and, if asked, the inference graph (`graphs.build_inference`). `data`:
    the (images, labels) the "memory" and "pipeline" inputs read (default:
    PIPELINE_IMAGES random ones)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        network = models.resnet(depth, 10, norm=norm, data_format=data_format)
        pipeline = None
        if input_kind == "synthetic":
            batch_input = graphs.Batch(
                tf.random.uniform([batch, *IMAGE_SHAPE]),
                tf.random.uniform([batch], 0, 10, tf.int64))
        else:  # "memory": in-memory batches; "pipeline": augmented too
            rng = np.random.RandomState(seed)
            images, labels = data or (
                rng.rand(PIPELINE_IMAGES, *IMAGE_SHAPE).astype(np.float32),
                rng.randint(0, 10, PIPELINE_IMAGES).astype(np.int64))
            if input_kind == "files":
                batch_input = pipeline = image_folder(
                    images, labels).train_input(seed, augment=True)
            else:
                batch_input = pipeline = TrainInput(
                    images, labels, seed, augment=input_kind == "pipeline")
        if mode == "train":
            step = graphs.build_training(network, batch_input, CONFIG).train_op
        else:
            step = tf.reduce_sum(network(batch_input.images, training=False))
        inference = (graphs.build_inference(network, IMAGE_SHAPE)
                     if with_inference else None)
        init = tf1.global_variables_initializer()
    return graph, init, step, pipeline, inference


_FOLDERS = []  # the temporary folders of `image_folder`, removed at exit


def image_folder(images, labels):
    """The images (floats in [0, 1]) as PNG files in a temporary folder
    tree (a class per label; the first 10 also as the test split), loaded
    as a `files.FileDataset`."""
    import tempfile
    from resnet.data import files
    _FOLDERS.append(tempfile.TemporaryDirectory(prefix="throughput-"))
    root = _FOLDERS[-1].name
    with tf.Graph().as_default(), tf1.Session() as session:
        pixels = tf1.placeholder(tf.uint8, [None, None, 3])
        png = tf.io.encode_png(pixels)
        for split, count in (("train", len(images)), ("val", 10)):
            for index in range(count):
                folder = os.path.join(root, split, f"class_{labels[index]}")
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, f"{index:05d}.png"),
                          "wb") as file:
                    file.write(session.run(png, {pixels: np.round(
                        images[index] * 255).astype(np.uint8)}))
    return files.load("folder", root, image_size=IMAGE_SHAPE[0])


class Case:
    """One benchmark case in its own open session, timed a step at a time."""

    def __init__(self, depth, norm, batch, input_kind, mode, config,
                 data_format="NHWC", warmup=5, with_inference=False,
                 data=None):
        self.key = {"depth": depth, "norm": norm or "none", "batch": batch,
                    "input": input_kind, "mode": mode}
        self.batch, self.seconds = batch, []
        use_threads(config)
        graph, init, self.step, pipeline, self.inference = build(
            depth, norm, batch, input_kind, mode, data_format,
            with_inference=with_inference, data=data)
        self.session = tf1.Session(graph=graph, config=config)
        self.session.run(init)
        self.pipeline, self.epoch, self.batches_left = pipeline, 0, None
        if pipeline:
            pipeline.load(self.session)
        for _ in range(warmup):
            self.time_step()

    def time_step(self):
        if self.pipeline and not self.batches_left:
            # A new epoch between steps, as ConvolutionNN starts one: untimed.
            self.batches_left = self.pipeline.start_epoch(
                self.session, self.epoch, self.batch, 0, 0)
            self.epoch += 1
        start = time.perf_counter()
        self.session.run(self.step)
        seconds = time.perf_counter() - start
        if self.pipeline:
            self.batches_left -= 1
        return seconds

    def result(self, steps):
        rates = [self.batch * steps / s for s in self.seconds]
        return dict(self.key, images_per_second=round(statistics.median(rates), 1),
                    min=round(min(rates), 1), max=round(max(rates), 1),
                    steps=steps, repeats=len(rates))


def measure(cases, steps, repeats):
    """Times every case `repeats` times, `steps` steps each, the cases taking
    turns step by step: a slow spell of the machine falls on all of them
    alike, so their ratios hold better than their rates."""
    for _ in range(repeats):
        seconds = [0.0] * len(cases)
        for _ in range(steps):
            for i, case in enumerate(cases):
                seconds[i] += case.time_step()
        for case, s in zip(cases, seconds):
            case.seconds.append(s)
    for case in cases:
        case.session.close()


def paired_ratio(seconds, reference_seconds):
    """Median and range over rounds of a case's time / the reference's,
    given the two cases' times round by round."""
    ratios = [a / b for a, b in zip(seconds, reference_seconds)]
    return (round(statistics.median(ratios), 3), round(min(ratios), 3),
            round(max(ratios), 3))


def ratios(cases):
    """Batch renorm against batch norm, and the input pipeline against
    synthetic input, each paired round by round."""
    by_key = {tuple(c.key.values()): c for c in cases}
    pairs = []
    for case in cases:
        depth, norm, batch, input_kind, mode = case.key.values()
        if norm == "batch_renorm":
            pairs.append(("batch_renorm/batch_norm", case,
                          by_key.get((depth, "batch_norm", batch, input_kind, mode))))
        if input_kind in ("pipeline", "files"):
            pairs.append((f"{input_kind}/synthetic", case,
                          by_key.get((depth, norm, batch, "synthetic", mode))))
    return [dict(case.key, ratio=name, step_time_ratio=paired_ratio(
                     case.seconds, ref.seconds))
            for name, case, ref in pairs if ref is not None]


def loop_group(args):
    """`ConvolutionNN.train` (in-memory 32x32x3 data with the CIFAR
    augmentation, its default hooks) against the compute-only step
    (synthetic input), one epoch of 8 x `--images` images each in turns;
    prints a JSON line per norm: both rates and the per-round ratio of the
    compute-only time to train's for the same steps (1: no cost besides
    the step's compute)."""
    from resnet.convolution_nn import ConvolutionNN
    from resnet.data.datasets import Dataset
    depth, batch = args.depth[0], args.batch[0]
    config = session_config(args.intra_threads, args.inter_threads,
                            args.precision, args.xla, batch, IMAGE_SHAPE)
    rng, images = np.random.RandomState(0), 8 * args.images
    dataset = Dataset("random", rng.rand(images, *IMAGE_SHAPE).astype(
        np.float32), rng.randint(0, 10, images).astype(np.int64),
        np.zeros([1, *IMAGE_SHAPE], np.float32), np.zeros([1], np.int64), 10)
    steps = images // batch
    for norm in args.norm:
        norm = None if norm == "none" else norm
        network = models.resnet(depth, 10, norm=norm)
        with ConvolutionNN(network, dataset, CONFIG, session_config=config,
                           progress=False, augment=True) as cnn:
            compute = Case(depth, norm, batch, "synthetic", "train", config,
                           args.data_format)
            cnn.train(batch, 1)  # warm-up
            trained, computed = [], []
            for _ in range(args.repeats):
                trained.append(cnn.train(batch, 1)[-1]["seconds"])
                computed.append(sum(compute.time_step() for _ in range(steps)))
            compute.session.close()
        speed = paired_ratio(computed, trained)
        print(json.dumps({
            "depth": depth, "norm": norm or "none", "batch": batch,
            "train_images_per_second": round(
                steps * batch / statistics.median(trained), 1),
            "compute_images_per_second": round(
                steps * batch / statistics.median(computed), 1),
            "train/compute speed": list(speed),
            "intra_threads": config.intra_op_parallelism_threads,
            "inter_threads": config.inter_op_parallelism_threads}))


def peak_memory_mib(depth=110, batch=128, steps=3):
    """Peak RSS of a fresh process training ResNet-`depth` for a few steps."""
    code = (f"import resource;"
            f"from benchmarks.throughput import Case, measure;"
            f"from resnet.runtime.session_config import session_config;"
            f"measure([Case({depth}, 'batch_renorm', {batch}, 'synthetic', "
            f"'train', session_config(), warmup=1)], {steps}, 1);"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024  # KiB on Linux


def machine():
    return {"cpu": cpu_description(), "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "onednn": onednn_enabled()}


def run_group(args):
    """Every case of one depth and batch size, in this process; prints a
    JSON line per case and per ratio."""
    depth, batch = args.depth[0], args.batch[0]
    steps = max(2, args.images // batch)
    # Threads sized to the step, as resnet-run sizes them.
    config = session_config(args.intra_threads, args.inter_threads,
                            args.precision, args.xla, batch, IMAGE_SHAPE)
    threads = {"intra_threads": config.intra_op_parallelism_threads,
               "inter_threads": config.inter_op_parallelism_threads}
    cases = [Case(depth, None if norm == "none" else norm, batch, input_kind,
                  mode, config, args.data_format)
             for input_kind, mode, norm in itertools.product(
                 args.input, args.mode, args.norm)
             # inference reads no training pipeline
             if not (mode == "inference" and input_kind != "synthetic")]
    measure(cases, steps, args.repeats)
    for line in [dict(case.result(steps), **threads) for case in cases] + ratios(cases):
        print(json.dumps(line))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, nargs="+", default=[20, 56])
    p.add_argument("--norm", nargs="+", default=["none", "batch_norm", "batch_renorm"])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8])
    p.add_argument("--input", nargs="+", default=["synthetic", "pipeline"],
                   choices=("synthetic", "pipeline", "memory", "files"))
    p.add_argument("--mode", nargs="+", default=["train", "inference"])
    p.add_argument("--images", type=int, default=512,
                   help="images per timed repeat (default 512)")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--precision", default="auto",
                   choices=("auto", "float32", "bfloat16"))
    p.add_argument("--xla", action="store_true")
    p.add_argument("--data-format", default="NHWC", choices=("NHWC", "NCHW"))
    p.add_argument("--intra-threads", type=int)
    p.add_argument("--inter-threads", type=int)
    p.add_argument("--memory", action="store_true",
                   help="also the peak memory of training ResNet-110")
    p.add_argument("--quick", action="store_true",
                   help="ResNet-20, batch 128, synthetic input only")
    p.add_argument("--loop", action="store_true",
                   help="ConvolutionNN.train with the CIFAR augmentation "
                        "against the compute-only step, instead of the table")
    p.add_argument("--group", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.batch, args.input = [20], [128], ["synthetic"]
    if args.group:
        return loop_group(args) if args.loop else run_group(args)
    settings = dict(machine(), precision=args.precision, xla=args.xla,
                    data_format=args.data_format,
                    bfloat16_native=has_bfloat16())
    print("# " + json.dumps(settings))
    print(f"{'depth':>5} {'norm':>12} {'batch':>5} {'input':>9} {'mode':>9} "
          f"{'img/s':>8} {'min':>8} {'max':>8} threads")
    results, paired = [], []
    for depth, batch in itertools.product(args.depth, args.batch):
        # A fresh process per group: TensorFlow keeps the intra-op threads
        # of a process's first session for all its later sessions.
        group = subprocess.run(
            [sys.executable, "-m", "benchmarks.throughput", *argv, "--depth",
             str(depth), "--batch", str(batch), "--group"],
            capture_output=True, text=True, cwd=ROOT)
        if group.returncode:
            sys.exit(f"ResNet-{depth} at batch {batch} failed:\n"
                     f"{group.stderr[-3000:]}")
        for result in map(json.loads, group.stdout.splitlines()):
            if args.loop:
                median, low, high = result["train/compute speed"]
                print(f"{depth:>5} {result['norm']:>12} {batch:>5} "
                      f"ConvolutionNN.train {result['train_images_per_second']:.1f}"
                      f" img/s, compute-only {result['compute_images_per_second']:.1f}:"
                      f" {median:.3f} ({low:.3f}-{high:.3f})", flush=True)
                results.append(result)
            elif "images_per_second" in result:
                results.append(result)
                print(f"{depth:>5} {result['norm']:>12} {batch:>5} "
                      f"{result['input']:>9} {result['mode']:>9} "
                      f"{result['images_per_second']:>8.1f} "
                      f"{result['min']:>8.1f} {result['max']:>8.1f} "
                      f"{result['intra_threads']}x{result['inter_threads']}",
                      flush=True)
            else:
                paired.append(result)
    print("# step time ratios, paired round by round: median (min-max)")
    for pair in paired:
        median, low, high = pair["step_time_ratio"]
        print(f"{pair['depth']:>5} {pair['norm']:>12} {pair['batch']:>5} "
              f"{pair['input']:>9} {pair['mode']:>9} {pair['ratio']:>24} "
              f"{median:.3f} ({low:.3f}-{high:.3f})")
    for result in results + paired:
        print(json.dumps(dict(result, **{k: settings[k] for k in
                                         ("precision", "xla", "data_format")})))
    if args.memory:
        print(json.dumps({"peak_rss_mib_resnet110_train_batch128":
                          round(peak_memory_mib(), 1)}))


if __name__ == "__main__":
    main()
