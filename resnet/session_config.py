"""Session settings for speed: threads, and the graph-mode levers measured in
benchmarks/throughput.py (README, "Performance")."""
import os

import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

tf1 = tf.compat.v1


PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_bfloat16():
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def session_config(intra_threads=None, inter_threads=None, precision="auto",
                   xla=False):
    """A ConfigProto for `ConvolutionNN(session_config=...)` (its default).

    intra_threads: threads inside one op (default: the machine's cores).
    inter_threads: ops run side by side (default 2).
    precision: "bfloat16" turns on oneDNN's automatic mixed precision
      (bfloat16 compute, float32 variables and loss); "auto" does so on CPUs
      that compute bfloat16 natively (AVX512_BF16, AMX), where it trains
      ResNet-20 about 1.35x faster with the same accuracy; "float32" never.
      It changes nothing on a GPU.
    xla: XLA JIT compilation of the session's graph (no gain measured here).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    bfloat16 = precision == "bfloat16" or (precision == "auto"
                                           and cpu_has_bfloat16())
    cores = os.cpu_count() or 1
    config = tf1.ConfigProto(
        intra_op_parallelism_threads=intra_threads or cores,
        inter_op_parallelism_threads=inter_threads or 2,
        allow_soft_placement=True)
    if bfloat16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    if xla:
        config.graph_options.optimizer_options.global_jit_level = (
            tf1.OptimizerOptions.ON_1)
    return config
