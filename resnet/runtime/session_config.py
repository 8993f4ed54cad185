"""Session settings for speed: threads, and the graph-mode levers measured in
benchmarks/throughput.py (README, "Performance")."""
import logging
import os

from batch_renorm.tensorflow_quiet import tf
from tensorflow.core.protobuf import rewriter_config_pb2

from resnet.checks import check_int
from resnet.errors import UsageError
from resnet.runtime.quiet import XLA_CPU_FLAG, xla_cpu_flag_set
from batch_renorm.cpu import SPEED_FLAGS, cpu_flags, cpuinfo, has_bfloat16

tf1 = tf.compat.v1


PRECISIONS = ("auto", "float32", "bfloat16")
# Measured on 2 cores (README, "Performance"): ResNet-20 trains faster with
# one thread per op up to batch 16 of 32x32 images, as fast at batch 32.
SMALL_STEP_PIXELS = 8 * 32 * 32
MAX_THREADS = 1024  # per pool: far above any machine's cores


def cpu_description():
    """The CPU's name, core count and speed-relevant flags, in one line."""
    import platform
    name = cpuinfo("model name") or platform.processor() or "unknown CPU"
    flags = cpu_flags()
    present = " ".join(flag for flag in SPEED_FLAGS if flag in flags)
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (f"{name}, {os.cpu_count()} cores, flags: "
            f"{present or 'none of ' + '/'.join(SPEED_FLAGS)}"
            + (f" (oneDNN limited by ONEDNN_MAX_CPU_ISA={limit})" if limit else ""))


def usable_cores():
    """The cores this process may run on (`taskset` and cgroup cpusets
    narrow them), which is what its threads can use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_device_supports(data_format):
    """NCHW runs on a GPU, or on a CPU through oneDNN: TensorFlow's own CPU
    kernels for pooling and convolution gradients are NHWC only."""
    if (data_format == "NCHW" and not onednn_enabled()
            and not tf.config.list_physical_devices("GPU")):
        raise UsageError("data_format NCHW needs a GPU, or oneDNN on the CPU "
                         "(TF_ENABLE_ONEDNN_OPTS=0 turns it off): use NHWC")


def onednn_enabled():
    """Whether TensorFlow runs its CPU ops through oneDNN (the default on
    x86 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns it off)."""
    from tensorflow.python.util import _pywrap_util_port
    return _pywrap_util_port.IsMklEnabled()


def check_threads(intra_threads, inter_threads):
    """Each is None (the default) or a thread count, at most MAX_THREADS."""
    check_int("intra_threads", intra_threads, high=MAX_THREADS, optional=True)
    check_int("inter_threads", inter_threads, high=MAX_THREADS, optional=True)


def check_precision(precision):
    """Raises UsageError unless `precision` is one of PRECISIONS that this
    machine can compute in: oneDNN's bfloat16 kernels need AVX-512 (they
    emulate it there, and compute it natively with AVX512_BF16 or AMX);
    on an AVX2-only CPU a bfloat16 convolution fails at the first step."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got "
                         f"{precision!r}")
    if (precision == "bfloat16" and "avx512f" not in cpu_flags()
            and not tf.config.list_physical_devices("GPU")):
        raise UsageError(
            "precision bfloat16 needs a CPU with AVX-512 (oneDNN's bfloat16 "
            "kernels; this one: " + cpu_description().split(", flags: ")[-1]
            + "): use float32, or auto (bfloat16 where the CPU computes it "
            "natively)")


def session_config(intra_threads=None, inter_threads=None, precision="auto",
                   xla=False, batch_size=None, image_shape=None):
    """A ConfigProto for `ConvolutionNN(session_config=...)` (its default).

    intra_threads: threads inside one op (default: the cores the process
      may use, or half of them for small steps, see below).
    inter_threads: ops run side by side (default 1, or 2 for small steps:
      by default as many threads as cores).
    batch_size, image_shape: the training step's size, if known. A step of
      at most SMALL_STEP_PIXELS pixels (batch x height x width) per core
      gets half the cores per op: its ops are too small to share out, and
      two at a time run side by side (a conv's input and filter gradients).
      A larger one gets every core per op, one op at a time. (The
      measurements: benchmarks/README.md, "Threads".) They hold for a
      session only if they are the process's (`use_threads`).
    precision: "bfloat16" turns on oneDNN's automatic mixed precision
      (bfloat16 compute, float32 variables and loss); "auto" does so on CPUs
      that compute bfloat16 natively (AVX512_BF16, AMX); "float32" never.
      It changes nothing on a GPU.
    xla: XLA JIT compilation of the session's graph. On a CPU TensorFlow compiles only with TF_XLA_FLAGS holding
      `--tf_xla_cpu_global_jit` from before its first session (resnet-run
      --xla sets it; from Python, set it before the import): without it,
      UsageError, as the flag would do nothing.

    Raises:
      UsageError: bad threads or precision, or xla that cannot compile.
    """
    check_threads(intra_threads, inter_threads)
    check_precision(precision)
    bfloat16 = precision == "bfloat16" or (precision == "auto"
                                           and has_bfloat16())
    cores = usable_cores()
    small = (batch_size is not None and image_shape is not None and
             batch_size * image_shape[0] * image_shape[1]
             <= SMALL_STEP_PIXELS * cores)
    if intra_threads is None:
        intra_threads = max(1, cores // 2) if small else cores
    config = tf1.ConfigProto(
        intra_op_parallelism_threads=intra_threads,
        inter_op_parallelism_threads=inter_threads or (2 if small else 1),
        allow_soft_placement=True)
    if bfloat16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    if xla and not tf.config.list_physical_devices("GPU") and (
            not xla_cpu_flag_set()):
        raise UsageError(
            f"xla on a CPU needs TF_XLA_FLAGS={XLA_CPU_FLAG} set before "
            f"TensorFlow's first session (resnet-run --xla sets it); "
            f"without it nothing would be compiled")
    if xla:
        config.graph_options.optimizer_options.global_jit_level = (
            tf1.OptimizerOptions.ON_1)
    return config


def use_threads(config):
    """Makes the intra-op threads of the ConfigProto `config` this
    process's, if TensorFlow has not fixed others yet. Call it before
    building a graph.

    TensorFlow runs every session's ops on the intra-op pool of the first
    CPU device it makes in the process. Its eager context makes one when it
    starts, with a thread per core, and building a `tf.data` map starts it:
    every training input does. A session made after such a graph ran on
    that pool whatever its ConfigProto said (measured: at batch 8 the step
    took 32 ms instead of 22 with 1 x 2 threads asked for, benchmarks/
    README.md). (The inter-op pool is the first session's, which this
    does not touch.)

    Returns:
      True if the process's intra-op threads are `config`'s as far as the
      eager context tells; False if TensorFlow had fixed other ones
      (logged as a warning). A session made earlier also fixes them, and
      that this cannot see.
    """
    threading = tf.config.threading
    asked = config.intra_op_parallelism_threads
    try:
        threading.set_intra_op_parallelism_threads(asked)
    except RuntimeError:  # the eager context has started: fixed
        pass
    cores = usable_cores()  # what TensorFlow's 0 means
    wanted = asked or cores
    got = threading.get_intra_op_parallelism_threads() or cores
    if got != wanted:
        logging.getLogger(__name__).warning(
            "this process's ops run on %d intra-op threads (TensorFlow fixed "
            "them before this session), not the %d asked for", got, wanted)
    return got == wanted


def precision_of(config):
    """"bfloat16" if the ConfigProto `config` turns on oneDNN's automatic
    mixed precision, else "float32": what a session of it computes in."""
    rewrites = config.graph_options.rewrite_options
    return ("bfloat16" if rewrites.auto_mixed_precision_onednn_bfloat16
            == rewriter_config_pb2.RewriterConfig.ON else "float32")
