"""TensorFlow's import without its C++ start-up lines: what the command
line, the experiments and `ConvolutionNN` import it through."""
import logging
import os
import sys


XLA_CPU_FLAG = "--tf_xla_cpu_global_jit"  # XLA JIT on a CPU needs it


def xla_cpu_flag_set():
    """Whether TF_XLA_FLAGS turns on XLA_CPU_FLAG (alone, or =true/=1)."""
    for token in os.environ.get("TF_XLA_FLAGS", "").split():
        name, _, value = token.partition("=")
        if name == XLA_CPU_FLAG:
            return value.lower() in ("", "true", "1")
    return False


def import_tensorflow_quietly(verbose=False, xla=False):
    """Imports TensorFlow and looks for GPUs without the C++ log lines their
    start-up writes to stderr (oneDNN notices no setting turns off, and
    "failed call to cuInit" on every machine without a GPU), so that a usage
    error or a result is all the terminal shows. Later errors still show.
    `verbose`: nothing hidden, and TensorFlow's own logging at INFO.
    Without it, a TensorFlow imported already stays as it is.
    `xla`: adds XLA_CPU_FLAG to TF_XLA_FLAGS first (TensorFlow reads them
    once, before its first session: `session_config(xla=True)` needs it
    there on a CPU)."""
    if xla and not xla_cpu_flag_set():
        os.environ["TF_XLA_FLAGS"] = (
            os.environ.get("TF_XLA_FLAGS", "") + " " + XLA_CPU_FLAG).strip()
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        import tensorflow as tf
        tf.get_logger().setLevel(logging.INFO)
        return
    if "tensorflow" in sys.modules:
        return
    # C++ errors too: each failure that matters reaches Python as an
    # exception, which the caller words in one line (a lost worker's gRPC
    # errors came as 4 to 6 lines before it).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")  # CUDA's start-up, once
        tf.get_logger().setLevel(logging.ERROR)  # deprecation notices
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
