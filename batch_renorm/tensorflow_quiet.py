"""TensorFlow, imported without its C++ start-up lines
(`quiet.import_tensorflow_quietly`): the modules of this project that
import it do so as `from batch_renorm.tensorflow_quiet import tf`."""
from batch_renorm.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import tensorflow as tf  # noqa: E402

__all__ = ["tf"]
