"""Batch Renormalization (Ioffe 2017) for TensorFlow-1-style graphs.

    from batch_renorm import batch_renorm, global_step, renorm_schedule

The names below import TensorFlow when first asked for, without its C++
start-up lines (`quiet.import_tensorflow_quietly`); importing the package
alone imports nothing, so that a program may set TensorFlow's environment
first.
"""
import importlib

from batch_renorm.quiet import import_tensorflow_quietly

_MODULES = {"NormLayer": "layer", "batch_norm": "layer",
            "batch_renorm": "layer", "norm_layers": "layer",
            "use_fast_start": "layer", "renorm_schedule": "schedule",
            "global_step": "step", "step_value": "step"}
__all__ = sorted(_MODULES)


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module 'batch_renorm' has no attribute {name!r}")
    import_tensorflow_quietly()
    value = getattr(importlib.import_module(f"batch_renorm.{_MODULES[name]}"),
                    name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
