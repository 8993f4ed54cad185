"""ResNet (He et al. 2015) with Batch Renormalization in tf.compat.v1 graphs.

Importing `resnet` before TensorFlow turns on TensorFlow's oneDNN kernels
on x86 CPUs where TensorFlow leaves them off (those without AVX512_VNNI,
AVX512_BF16 or AMX, e.g. AVX2-only ones): TF_ENABLE_ONEDNN_OPTS=1 unless
it is set (the speed it brings: benchmarks/README.md).
TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's own kernels.
"""
import os
import platform

if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
