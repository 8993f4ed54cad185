"""Layer wrappers that build `tf.compat.v1` graph pieces.

Each wrapper takes the input tensor, its sizes, `training` (a Python bool or
a scalar bool tensor) and flags that add, in this order: batch norm or batch
renorm, an activation, dropout and pooling. `name` is its variable scope;
build the same layers again under `reuse` to share their variables.
Images are NHWC, or NCHW with `data_format="NCHW"` (faster on a GPU); the
variables are the same in both layouts.

Kernels go into `tf.compat.v1.GraphKeys.WEIGHTS`, the collection weight decay
applies to; biases and the norms' gamma and beta are left out of it.

Typical use:
    h = conv_layer(images, 16, training, batch_renorm=True, name="conv")
    h = resnet_block(h, 32, training, strides=2, batch_renorm=True, name="b1")
    logits = dense_layer(h, 10, training, activation=None, name="logits")

Reference: He et al. 2015, "Deep Residual Learning for Image Recognition".
"""
import zlib

import tensorflow as tf

from batch_renorm import batch_norm as _batch_norm
from batch_renorm import batch_renorm as _batch_renorm
from batch_renorm import step_value
from batch_renorm.layer import channels, check_data_format

tf1 = tf.compat.v1

POOLS = (None, "max", "avg")
SHORTCUTS = ("A", "B")


def conv_layer(inputs, filters, training, kernel_size=3, strides=1,
               batch_norm=False, batch_renorm=False, activation=tf.nn.relu,
               dropout_rate=0.0, pool=None, renorm_clip=None,
               norm_momentum=0.99, norm_group_size=None, data_format="NHWC",
               name=None):
    """A 'SAME'-padded 2-D convolution of `inputs`, then the flags' ops.

    It has a bias only without a norm (the norm's beta takes its place).
    `renorm_clip` is `(rmax, dmax)` for batch renorm (None: the default
    schedule of the global step); `norm_momentum` and `norm_group_size`
    (microbatches) go to the norm.
    """
    _check_flags(batch_norm, batch_renorm, dropout_rate, pool, data_format)
    with tf1.variable_scope(name, default_name="conv"):
        kernel = _kernel([kernel_size, kernel_size,
                          channels(inputs, data_format), filters])
        h = tf.nn.conv2d(inputs, kernel, strides, padding="SAME",
                         data_format=data_format)
        return _bias_norm_activation(
            h, training, batch_norm, batch_renorm, renorm_clip, norm_momentum,
            norm_group_size, activation, dropout_rate, pool, data_format)


def dense_layer(inputs, units, training, batch_norm=False, batch_renorm=False,
                activation=tf.nn.relu, dropout_rate=0.0, renorm_clip=None,
                norm_momentum=0.99, norm_group_size=None, name=None):
    """A fully connected layer; a 4-D input is flattened first."""
    _check_flags(batch_norm, batch_renorm, dropout_rate, None, "NHWC")
    with tf1.variable_scope(name, default_name="dense"):
        if inputs.shape.rank != 2:
            inputs = tf.reshape(inputs, [-1, inputs.shape[1:].num_elements()])
        h = tf.matmul(inputs, _kernel([inputs.shape[-1], units]))
        return _bias_norm_activation(
            h, training, batch_norm, batch_renorm, renorm_clip, norm_momentum,
            norm_group_size, activation, dropout_rate, None, "NHWC")


def resnet_block(inputs, filters, training, strides=1, shortcut="A",
                 batch_norm=False, batch_renorm=False, dropout_rate=0.0,
                 pool=None, renorm_clip=None, norm_momentum=0.99,
                 norm_group_size=None, data_format="NHWC", name=None):
    """The basic residual block: two 3x3 convolutions and a shortcut.

    y = relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)), then dropout and
    pooling if asked. The shortcut is the identity while the shape holds; on
    a change of size, option "A" subsamples and zero-pads the channels (the
    paper's CIFAR choice, no parameters), option "B" is a 1x1 projection.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
    _check_flags(batch_norm, batch_renorm, dropout_rate, pool, data_format)
    norm = dict(training=training, batch_norm=batch_norm,
                batch_renorm=batch_renorm, renorm_clip=renorm_clip,
                norm_momentum=norm_momentum, norm_group_size=norm_group_size,
                data_format=data_format)
    with tf1.variable_scope(name, default_name="block"):
        h = conv_layer(inputs, filters, strides=strides, name="conv1", **norm)
        h = conv_layer(h, filters, activation=None, name="conv2", **norm)
        in_filters = channels(inputs, data_format)
        if strides == 1 and in_filters == filters:
            skip = inputs
        elif shortcut == "A":
            # inputs[:, ::strides, ::strides] as a 1x1 pooling: the same
            # values, an order of magnitude faster than a strided slice.
            skip = tf.nn.avg_pool2d(inputs, 1, strides, "VALID",
                                    data_format=data_format)
            extra = filters - in_filters
            padding = [extra // 2, extra - extra // 2]
            skip = tf.pad(skip, [[0, 0], [0, 0], [0, 0], padding]
                          if data_format == "NHWC" else
                          [[0, 0], padding, [0, 0], [0, 0]])
        else:
            skip = conv_layer(inputs, filters, kernel_size=1, strides=strides,
                              activation=None, name="projection", **norm)
        h = tf.nn.relu(h + skip)
        h = _dropout_and_pool(h, training, dropout_rate, pool, data_format)
        return tf.identity(h, name="output")


def _check_flags(batch_norm, batch_renorm, dropout_rate, pool, data_format):
    if batch_norm and batch_renorm:
        raise ValueError("batch_norm and batch_renorm are exclusive: "
                         "choose one")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    check_data_format(data_format)


def _kernel(shape):
    # He et al. 2015 ("Delving deep into rectifiers") initialisation.
    kernel = tf1.get_variable(
        "kernel", shape, tf.float32,
        tf1.variance_scaling_initializer(2.0, "fan_in", "truncated_normal"),
        use_resource=True)
    if kernel not in tf1.get_collection(tf1.GraphKeys.WEIGHTS):
        tf1.add_to_collection(tf1.GraphKeys.WEIGHTS, kernel)
    return kernel


def _bias(size):
    return tf1.get_variable("bias", [size], tf.float32,
                            tf1.zeros_initializer(), use_resource=True)


def _bias_norm_activation(h, training, batch_norm, batch_renorm, renorm_clip,
                          momentum, group_size, activation, dropout_rate,
                          pool, data_format):
    """What follows a conv or dense layer's product: a bias (without a
    norm), the norm, the activation, dropout and pooling."""
    if not (batch_norm or batch_renorm):
        h = tf.nn.bias_add(h, _bias(channels(h, data_format)),
                           data_format=data_format)
    norm = dict(momentum=momentum, group_size=group_size,
                data_format=data_format)
    if batch_norm:
        h = _batch_norm(h, training, name="batch_norm", **norm)
    elif batch_renorm:
        rmax, dmax = renorm_clip or (None, None)
        h = _batch_renorm(h, training, rmax=rmax, dmax=dmax,
                          name="batch_renorm", **norm)
    h = activation(h) if activation is not None else h
    return _dropout_and_pool(h, training, dropout_rate, pool, data_format)


def _dropout_and_pool(h, training, rate, pool, data_format):
    if rate > 0.0 and training is not False:
        dropped = _stateless_dropout(h, rate)
        h = dropped if training is True else tf.cond(
            training, lambda: dropped, lambda: h)
    if pool is not None:
        pool_op = tf.nn.max_pool2d if pool == "max" else tf.nn.avg_pool2d
        h = pool_op(h, ksize=2, strides=2, padding="SAME",
                    data_format=data_format)
    return h


def _stateless_dropout(h, rate):
    """Dropout whose mask is a pure function of (graph seed, layer, step).

    The same layer at the same global step drops the same units, so a
    training run resumed from a checkpoint repeats the original exactly.
    """
    scope = tf1.get_variable_scope().name
    layer_seed = zlib.crc32(scope.encode()) ^ (h.graph.seed or 0)
    seed = tf.stack([tf.constant(layer_seed, tf.int64), step_value(h.graph)])
    return tf.nn.experimental.stateless_dropout(h, rate, seed=seed)
