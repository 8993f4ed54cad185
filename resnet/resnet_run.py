"""resnet-run: train a ResNet (or a custom stack) on a dataset and report
its test accuracy.

    resnet-run                                  # ResNet-20, batch renorm, digits
    resnet-run --dataset fashion_mnist --epochs 1
    resnet-run --dataset cifar10 --data-dir ~/data --batch-size 128 --epochs 182
    resnet-run --layers conv:32:pool=max,block:64:strides=2,dense:128:dropout=0.3
    resnet-run --dataset tfrecord --data-dir /data/imagenet --resnet imagenet --depth 50

The only module that reads command-line flags. It imports TensorFlow (and
so the modules that use it) only once main() runs, and quietly.
"""
import argparse
import collections
import dataclasses
import logging
import os
import signal
import sys
import textwrap
import time

from resnet import errors
from resnet.runtime.quiet import import_tensorflow_quietly
from resnet.data import datasets

# Per-dataset defaults: (batch size, epochs).
DEFAULTS = {"digits": (64, 30), "mnist": (128, 10),
            "fashion_mnist": (128, 10), "cifar10": (128, 182),
            "folder": (32, 90), "tfrecord": (32, 90)}


class _Formatter(argparse.HelpFormatter):
    """Wraps help text at spaces only: a layer spec or a path stays whole."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width,
                             break_long_words=False, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line and exit status 2, as for any usage error."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _steps(text):
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated steps, got {text!r}") from None


def build_parser():
    from batch_renorm import schedule
    from resnet import models
    from resnet.train import config as training
    from resnet.runtime.cluster import COLLECTIVE_TIMEOUT
    from resnet.train.config import CHECKPOINT_SECS

    # No abbreviations: main() looks for --verbose and --xla before parsing.
    p = _Parser(prog="resnet-run", description=__doc__.split("\n\n")[0],
                formatter_class=_Formatter, allow_abbrev=False)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="digits", choices=(
        *datasets.NAMES, *datasets.FILE_FORMATS), help="folder: DIR/train/"
        "CLASS/IMAGE and DIR/val/...; tfrecord: DIR/train-* and "
        "DIR/validation-* shards of tf.train.Examples (image/encoded, "
        "image/class/label), read while training (resnet.data.files)")
    data.add_argument("--data-dir", help="where the dataset's files are "
                      "(MNIST, Fashion-MNIST, CIFAR-10: downloaded there "
                      "if absent)")
    data.add_argument("--image-size", type=int, metavar="S", help="folder "
                      f"and tfrecord: train and test on SxS crops (default "
                      f"{datasets.FILE_IMAGE_SIZE})")
    data.add_argument("--max-pixels", type=int, metavar="N", help="folder "
                      "and tfrecord: an image of more pixels (width x "
                      "height) stops training, naming it, before it is "
                      "decoded; 0: no cap (default 100,000,000)")
    data.add_argument("--index-dir", metavar="DIR", help="tfrecord: where "
                      "the shards' indexes are kept (default "
                      "$XDG_CACHE_HOME/resnet-batch-renorm/index; a shared "
                      "one serves every machine of a cluster)")
    data.add_argument("--validation", type=int, default=0, metavar="N",
                      help="hold out N training images and test on them")
    data.add_argument("--classes-per-group", type=int, metavar="K",
                      help="build each group of --group-size training "
                      "examples from K classes only, the batch staying "
                      "class-balanced (non-i.i.d. normalisation groups)")
    data.add_argument("--group-size", type=int, metavar="G",
                      help="the groups of --classes-per-group (default: "
                      "the whole batch)")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction,
                      help="pad-crop-flip, or for folder and tfrecord "
                      "random-resized crops and flips (default: on for "
                      "32x32 RGB and for files)")
    model = p.add_argument_group("model")
    model.add_argument("--resnet", default="cifar",
                       choices=("cifar", "imagenet"), help="cifar: He et "
                       "al.'s CIFAR-10 ResNets (depth 6n+2); imagenet: "
                       "their ImageNet ones (depth 18, 34, 50, 101, 152)")
    model.add_argument("--depth", type=int, help="ResNet depth (default "
                       "20, or 50 with --resnet imagenet)")
    model.add_argument("--layers", help="a custom stack instead of a ResNet: "
                       f"a spec like conv:32:pool=max,block:64:strides=2,"
                       f"dense:128:dropout=0.3, or a preset "
                       f"({', '.join(models.PRESETS)})")
    model.add_argument("--norm", default="batch_renorm",
                       choices=("none", "batch_norm", "batch_renorm"))
    model.add_argument("--shortcut", choices=("A", "B"), help="where a "
                       "block changes size: A zero-pads (default), B "
                       "projects (default with --resnet imagenet)")
    model.add_argument("--dropout", type=float, default=0.0,
                       help="dropout rate after every ResNet block")
    model.add_argument("--norm-momentum", type=float, default=0.99)
    model.add_argument("--microbatch", type=int, metavar="M",
                       help="norm statistics per group of M examples in "
                       "training (the batch size must be a multiple of M)")
    model.add_argument("--data-format", default="NHWC",
                       choices=("NHWC", "NCHW"),
                       help="the layers' layout: NCHW is faster on a GPU "
                       "(default NHWC); checkpoints fit either")
    renorm = p.add_argument_group(
        "batch renorm schedule (default: r = 1, d = 0 while the moving "
        "statistics converge, 3 / alpha steps, then a linear ramp to rmax, "
        "dmax at half-way; see batch_renorm.schedule.short_run_schedule)")
    renorm.add_argument("--rmax", type=float, default=schedule.RMAX)
    renorm.add_argument("--dmax", type=float, default=schedule.DMAX)
    renorm.add_argument("--renorm-warmup", type=int, metavar="STEPS")
    renorm.add_argument("--rmax-steps", type=int, metavar="STEPS")
    renorm.add_argument("--dmax-steps", type=int, metavar="STEPS")
    train = p.add_argument_group("training")
    def per_dataset(index):
        return ", ".join(f"{name} {values[index]}"
                         for name, values in DEFAULTS.items())

    train.add_argument("--batch-size", type=int, help="the global batch "
                       f"(default per dataset: {per_dataset(0)})")
    train.add_argument("--epochs", type=int, help="in all: a run resumed "
                       "from --model-dir trains only what is left (default "
                       f"per dataset: {per_dataset(1)})")
    train.add_argument("--lr", type=float, default=training.LEARNING_RATE)
    train.add_argument("--lr-boundaries", type=_steps, metavar="S1,S2",
                       help="steps where the lr is divided by 10 "
                       "(default: at 50%% and 75%% of the run)")
    train.add_argument("--momentum", type=float, default=training.MOMENTUM)
    train.add_argument("--weight-decay", type=float,
                       default=training.WEIGHT_DECAY)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--precision", default="auto",
                       choices=("auto", "float32", "bfloat16"),
                       help="auto: bfloat16 mixed precision on CPUs that "
                       "compute it natively, else float32")
    train.add_argument("--xla", action="store_true",
                       help="XLA JIT compilation (on a CPU through "
                       "TF_XLA_FLAGS=--tf_xla_cpu_global_jit, which it sets)")
    train.add_argument("--intra-threads", type=int, metavar="N",
                       help="threads inside one op (default: the cores, or "
                       "half of them for small steps)")
    train.add_argument("--inter-threads", type=int, metavar="N",
                       help="ops run side by side (default 1, or 2 for "
                       "small steps)")
    train.add_argument("--deterministic", action="store_true",
                       help="TensorFlow's op determinism: bitwise "
                       "reproducible runs, a little slower")
    dist = p.add_argument_group(
        "several processes or machines (data-parallel; TF_CONFIG is read "
        "when --worker-hosts is not given)")
    dist.add_argument("--worker-hosts", metavar="H:P,H:P", help="every "
                      "worker's host:port, the same list on every worker")
    dist.add_argument("--task-index", type=int, metavar="I", help="this "
                      "worker's place in --worker-hosts (0: the chief, which "
                      "saves and reports)")
    dist.add_argument("--local-workers", type=int, metavar="N", help="start "
                      "N workers on this machine and print the chief's result")
    dist.add_argument("--sync-statistics", action="store_true",
                      help="the norms use the whole global batch's moments "
                      "(default: each worker's own slice's)")
    dist.add_argument("--collective-timeout", type=float, metavar="SECONDS",
                      default=COLLECTIVE_TIMEOUT, help="how long a step "
                      "waits for a lost worker (default %(default)s)")
    run = p.add_argument_group("checkpoints and logs")
    run.add_argument("--model-dir", help="checkpoints and TensorBoard logs "
                     "go here; a run there resumes from the newest checkpoint")
    run.add_argument("--allow-changes", action="store_true",
                     help="resume a --model-dir with other training "
                     "arguments (batch size, lr, seed, ...) than its "
                     "checkpoints were trained with; refused without it")
    run.add_argument("--checkpoint-secs", type=float, metavar="SECONDS",
                     default=CHECKPOINT_SECS)
    run.add_argument("--checkpoint-steps", type=int, metavar="STEPS")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar")
    run.add_argument("--export", metavar="DIR", help="write the trained "
                     "network as a SavedModel to DIR (also from a finished "
                     "--model-dir, without training)")
    run.add_argument("--verbose", action="store_true",
                     help="TensorFlow's own logging too")
    return p


def length_defaults(args, total_steps):
    """The run's `run_length_defaults`, overridden by the flags given:
    (TrainConfig fields, Network fields)."""
    from resnet.train.config import run_length_defaults
    defaults = run_length_defaults(total_steps, args.norm_momentum)
    schedule = dict(defaults["network"]["renorm_schedule"], rmax=args.rmax,
                    dmax=args.dmax)
    for key, flag in (("warmup_steps", args.renorm_warmup),
                      ("rmax_steps", args.rmax_steps),
                      ("dmax_steps", args.dmax_steps)):
        if flag is not None:
            schedule[key] = flag
    train = dict(defaults["train"])
    if args.lr_boundaries is not None:
        train["lr_boundaries"] = args.lr_boundaries
    return train, {"renorm_schedule": schedule}


Plan = collections.namedtuple("Plan", "network dataset config run_config "
                              "batch_size epochs")


def plan(args, workers=None):
    """Checks every argument and loads the data, before any graph is built;
    returns the run's `Plan`. A ValueError here is a usage error.
    `workers`: the count --local-workers is to start (the cluster flags
    give it otherwise)."""
    from resnet import models
    from resnet.data.input_pipeline import batches_per_epoch, trim_unit
    from resnet.runtime.session_config import check_precision, check_threads
    from resnet.storage.export import check_export_path
    from resnet.train.config import RunConfig, TrainConfig
    from resnet.train.validation import check_run

    batch_size, epochs = DEFAULTS[args.dataset]
    batch_size = batch_size if args.batch_size is None else args.batch_size
    epochs = epochs if args.epochs is None else args.epochs
    # Every argument is checked before any data is read or graph built.
    config = TrainConfig(
        learning_rate=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_boundaries=args.lr_boundaries or (), augment=args.augment,
        seed=args.seed, classes_per_group=args.classes_per_group,
        group_size=args.group_size)
    # --local-workers makes the cluster itself (without TF_CONFIG).
    cluster = None if workers else cluster_from(args)
    run_config = RunConfig(
        model_dir=args.model_dir, checkpoint_secs=args.checkpoint_secs,
        checkpoint_steps=args.checkpoint_steps,
        progress=False if args.no_progress else None, cluster=cluster,
        # --local-workers: each worker checks it with its cluster.
        sync_statistics=args.sync_statistics and not workers,
        allow_changes=args.allow_changes)
    if args.export is not None:
        check_export_path(args.export, args.model_dir)
    check_threads(args.intra_threads, args.inter_threads)
    check_precision(args.precision)
    norm = None if args.norm == "none" else args.norm
    options = dict(norm=norm, shortcut=args.shortcut or (
                       "B" if args.resnet == "imagenet" else "A"),
                   norm_momentum=args.norm_momentum,
                   microbatch=args.microbatch,
                   data_format=args.data_format)
    # Checked now, completed below once the dataset gives its sizes (every
    # dataset here has 10 classes).
    if args.layers is not None:
        if args.resnet != "cifar":
            raise ValueError("--resnet picks a ResNet: not with --layers")
        network = models.custom(args.layers, 10, **options)
    elif args.resnet == "imagenet":
        if args.dropout:
            raise ValueError("--dropout is for --resnet cifar")
        network = models.imagenet_resnet(args.depth or 50, 10, **options)
    else:
        network = models.resnet(args.depth or 20, 10,
                                dropout_rate=args.dropout, **options)
    parts = cluster.size if cluster else workers or 1
    # The data's part comes once the data is loaded.
    check_run(network, config, None, batch_size, epochs, parts,
              args.sync_statistics)
    if epochs < 1:  # the defaults follow the run's length: it needs one
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    files = args.dataset in datasets.FILE_FORMATS
    if args.image_size is not None and not files:
        raise ValueError("--image-size is for --dataset folder or tfrecord")
    if args.index_dir is not None and args.dataset != "tfrecord":
        raise ValueError("--index-dir is for --dataset tfrecord")
    if args.max_pixels is not None and not files:
        raise ValueError("--max-pixels is for --dataset folder or tfrecord")
    if args.validation and files:
        raise ValueError(f"--validation holds out in-memory images: a "
                         f"{args.dataset} dataset tests on its own split")
    if args.deterministic:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()

    if files:
        from resnet.data import files as file_data
        from resnet.runtime.session_config import use_threads
        size = (datasets.FILE_IMAGE_SIZE if args.image_size is None
                else args.image_size)
        # Indexing the files runs sessions of their own, and the first
        # session fixes the process's threads: the training's first.
        use_threads(_session_config(args, batch_size, (size, size, 3)))
        ds = file_data.load(args.dataset, args.data_dir, size,
                            index_dir=args.index_dir,
                            max_pixels=(file_data.MAX_PIXELS
                                        if args.max_pixels is None
                                        else args.max_pixels))
    else:
        ds = datasets.load(args.dataset, args.data_dir)
    if args.validation:
        ds = ds.split_validation(args.validation, seed=args.seed)
    check_run(network, config, ds, batch_size, epochs, parts,
              args.sync_statistics)
    total_steps = epochs * batches_per_epoch(
        ds.train_size, batch_size, trim_unit(parts, args.microbatch))
    train_defaults, network_defaults = length_defaults(args, total_steps)
    network = dataclasses.replace(network, num_classes=ds.num_classes,
                                  **network_defaults)
    config = dataclasses.replace(config, **train_defaults)
    # A cluster's worker trains its slice; --local-workers' share one machine.
    check_size(network, ds.image_shape,
               batch_size // cluster.size if cluster else batch_size)
    return Plan(network, ds, config, run_config, batch_size, epochs)


def _session_config(args, batch_size, image_shape):
    """The training session's ConfigProto that `args` ask for."""
    from resnet.runtime.session_config import session_config
    return session_config(args.intra_threads, args.inter_threads,
                          args.precision, args.xla, batch_size, image_shape)


def run(args, plan):
    """Trains as `args` and their `plan` say; returns (test metrics, global
    step)."""
    from resnet.convolution_nn import ConvolutionNN

    network, ds, config, run_config, batch_size, epochs = plan
    cluster = run_config.cluster
    with ConvolutionNN(network, ds, config, run_config,
                       session_config=_session_config(
                           args, batch_size, ds.image_shape)) as cnn:
        if cnn.epochs_done >= epochs:
            logging.info("%s: all %d epochs are done already",
                         args.model_dir, epochs)
        else:
            cnn.train(batch_size, epochs - cnn.epochs_done)
        if args.export is not None and not (cluster and not cluster.is_chief):
            logging.info("exported a SavedModel to %s", cnn.export(args.export))
        return cnn.evaluate(), int(cnn.session.run(cnn.global_step))


def check_size(network, image_shape, batch_size):
    """Logs the network's size and the memory training it takes (before a
    graph that may take minutes to build); raises ValueError if that is more
    than the machine has."""
    from resnet.models import training_bytes
    params, _ = network.size(image_shape)
    need = training_bytes(network, image_shape, batch_size)
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    size = (f"{network.name}: {params:,} parameters, about "
            f"{_in_units(need)} to train at batch {batch_size}")
    if need > have:
        raise ValueError(f"{size}, more than this machine's "
                         f"{_in_units(have)}: use fewer or smaller layers, "
                         f"or a smaller batch")
    logging.info("%s; building the graph", size)


def schedule_hint(args, message):
    """Why a resume changed schedules the user never set: they follow the
    run's length (--epochs, --batch-size)."""
    derived = [name for name, flag in (
        ("lr_boundaries", args.lr_boundaries),
        ("renorm_schedule", args.renorm_warmup))
        if flag is None and name in message]
    if not derived:
        return ""
    return (f" (the default {' and '.join(derived)} follow the run's length:"
            f" to train longer, give them as before with --lr-boundaries, "
            f"--renorm-warmup, --rmax-steps, --dmax-steps, or allow the "
            f"change)")


def _in_units(count):
    return (f"{count / 2**30:.1f} GiB" if count >= 2**30
            else f"{count / 2**20:.0f} MiB")


def report(prog, error, args):
    """Prints `error` in one line; returns the exit status its class gives
    (`errors.exit_status`)."""
    status = errors.exit_status(error)
    message = str(error)
    if isinstance(error, errors.RunChangedError):
        message += schedule_hint(args, message)
    elif isinstance(error, errors.TrainingInterrupted):
        message += "; run the same command again to resume"
    print(f"{prog}: {'error: ' if status == 2 else ''}{message}",
          file=sys.stderr, flush=True)
    if isinstance(error, errors.PeersNotReady):
        # A thread stays blocked in gRPC and would hold the interpreter's
        # exit: the command line ends the process itself.
        os._exit(status)
    return status


def cluster_from(args):
    """The run's `Cluster` from the flags or TF_CONFIG, or None."""
    from resnet.runtime.cluster import Cluster, check_port_free
    if (args.worker_hosts is None) != (args.task_index is None):
        raise ValueError("--worker-hosts and --task-index go together")
    if args.worker_hosts is not None:
        cluster = Cluster.parse(args.worker_hosts, args.task_index)
    else:
        cluster = Cluster.from_tf_config()
    if cluster is None:
        return None
    cluster = dataclasses.replace(cluster, timeout=args.collective_timeout)
    host, port = cluster.workers[cluster.task_index].rsplit(":", 1)
    check_port_free(host, int(port))
    return cluster


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        # Before TensorFlow reads them: its logging level and XLA's flags.
        import_tensorflow_quietly(verbose="--verbose" in argv,
                                  xla="--xla" in argv)
    except KeyboardInterrupt:  # seconds of start-up: no traceback
        print("resnet-run: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from resnet.runtime import local_cluster
    from resnet.train.signals import second_interrupt_ends_process
    local_cluster.follow_launcher()
    with second_interrupt_ends_process():  # not after the step under way
        return _main(parser, args, argv)


def _main(parser, args, argv):
    """main's work on parsed `args`: returns the exit status."""
    from resnet.runtime import local_cluster
    start = time.perf_counter()
    try:
        if args.local_workers is not None:
            try:
                local_cluster.check_local_workers(
                    args.local_workers, args.worker_hosts is not None
                    or args.task_index is not None)
                # Every argument, before any worker starts: one line, not N.
                plan(args, workers=args.local_workers)
            except ValueError as error:
                parser.error(str(error))
            return local_cluster.run_local_workers(args.local_workers, argv)
        try:
            checked = plan(args)
        except ValueError as error:  # bad arguments, DatasetError
            parser.error(str(error))
        metrics, step = run(args, checked)
    except errors.Error as error:
        if isinstance(error, errors.TrainingInterrupted):
            # Saved and stopping: a second Ctrl-C now ends it at once.
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
            except KeyboardInterrupt:  # the second came before this line
                signal.signal(signal.SIGINT, signal.SIG_DFL)
        return report(parser.prog, error, args)
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (loading, building, evaluating),
        # or a second one after it stopped: nothing to save.
        print(f"{parser.prog}: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    print(f"test accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f})"
          f" after {step} steps, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
