"""TensorFlow's import without its C++ start-up lines: what importing
`batch_renorm` (and, through `resnet.runtime.quiet`, the command line, the
experiments and `ConvolutionNN`) imports it through."""
import logging
import os
import sys


def import_tensorflow_quietly(verbose=False):
    """Imports TensorFlow and looks for GPUs without the C++ log lines their
    start-up writes to stderr (oneDNN notices no setting turns off, and
    "failed call to cuInit" on every machine without a GPU), so that a usage
    error or a result is all the terminal shows. Later errors still show.
    `verbose`: nothing hidden, and TensorFlow's own logging at INFO.
    Without it, a TensorFlow imported already stays as it is."""
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
