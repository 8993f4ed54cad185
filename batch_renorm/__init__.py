"""Batch Renormalization (Ioffe 2017) for TensorFlow-1-style graphs.

    from batch_renorm import batch_renorm, global_step, renorm_schedule
"""
from batch_renorm.layer import (NormLayer, batch_norm, batch_renorm,
                                norm_layers, use_fast_start)
from batch_renorm.schedule import renorm_schedule
from batch_renorm.step import global_step, step_value

__all__ = ["NormLayer", "batch_norm", "batch_renorm", "global_step",
           "norm_layers", "renorm_schedule", "step_value", "use_fast_start"]
