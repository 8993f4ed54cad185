"""ResNet (He et al. 2015) with Batch Renormalization in tf.compat.v1 graphs."""
