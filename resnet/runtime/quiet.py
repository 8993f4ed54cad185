"""TensorFlow's import without its C++ start-up lines
(`batch_renorm.quiet`), and the XLA flag TensorFlow reads at its import."""
import os

from batch_renorm import quiet  # imports no TensorFlow

XLA_CPU_FLAG = "--tf_xla_cpu_global_jit"  # XLA JIT on a CPU needs it


def xla_cpu_flag_set():
    """Whether TF_XLA_FLAGS turns on XLA_CPU_FLAG (alone, or =true/=1)."""
    for token in os.environ.get("TF_XLA_FLAGS", "").split():
        name, _, value = token.partition("=")
        if name == XLA_CPU_FLAG:
            return value.lower() in ("", "true", "1")
    return False


def import_tensorflow_quietly(verbose=False, xla=False):
    """`batch_renorm.quiet.import_tensorflow_quietly(verbose)`; `xla` adds
    XLA_CPU_FLAG to TF_XLA_FLAGS first (TensorFlow reads them once, before
    its first session: `session_config(xla=True)` needs it there on a
    CPU)."""
    if xla and not xla_cpu_flag_set():
        os.environ["TF_XLA_FLAGS"] = (
            os.environ.get("TF_XLA_FLAGS", "") + " " + XLA_CPU_FLAG).strip()
    quiet.import_tensorflow_quietly(verbose)
