"""ResNet (He et al. 2015) with Batch Renormalization in tf.compat.v1 graphs.

Importing `resnet` before TensorFlow turns on TensorFlow's oneDNN kernels
where TensorFlow leaves them off (CPUs without AVX512_VNNI, AVX512_BF16 or
AMX, e.g. AVX2-only ones): TF_ENABLE_ONEDNN_OPTS=1 unless it is set. On an
AVX2 AMD EPYC they trained ResNet-20 on 32x32 images about twice as fast at
batch 128 and ~1.3x at batch 8 (benchmarks/README.md). TF_ENABLE_ONEDNN_OPTS=0
keeps TensorFlow's own kernels.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
