"""Layer wrappers that build `tf.compat.v1` graph pieces.

Each wrapper takes the input tensor, its sizes, `training` and flags that
add, in this order: batch norm or batch renorm, an activation, dropout and
pooling. What every layer of a network shares is chosen once: a `Settings`
(training, the norm from `normalizer_for` with its momentum and
microbatch, the layout) given in place of `training`; for a layer on its
own, `training` (a Python bool or a scalar bool tensor) and the flags
`batch_norm`, `batch_renorm`, `normalizer` and `data_format` say the same.
`name` is its variable scope; build the same layers again under `reuse` to
share their variables. Images are NHWC, or NCHW with `data_format="NCHW"`
(faster on a GPU); the variables are the same in both layouts.

Kernels go into `tf.compat.v1.GraphKeys.WEIGHTS`, the collection weight decay
applies to; biases and the norms' gamma and beta are left out of it.

Typical use:
    h = conv_layer(images, 16, training, batch_renorm=True, name="conv")
    settings = Settings(training, normalizer_for("batch_renorm", momentum=0.9,
                                                 microbatch=4))
    h = resnet_block(h, 32, settings, strides=2, name="b1")
    logits = dense_layer(h, 10, training, activation=None, name="logits")

Reference: He et al. 2015, "Deep Residual Learning for Image Recognition".
"""
import collections
import dataclasses
import functools
import zlib
from typing import Any, Callable, Optional

from batch_renorm.tensorflow_quiet import tf

from batch_renorm import batch_norm as _batch_norm
from batch_renorm import batch_renorm as _batch_renorm
from batch_renorm import step_value
from batch_renorm.layer import channels, check_data_format

tf1 = tf.compat.v1

POOLS = (None, "max", "avg", "max3")  # max3: 3x3, stride 2 (the ImageNet stem)
SHORTCUTS = ("A", "B")
NORMS = (None, "batch_norm", "batch_renorm")


def normalizer_for(norm, momentum=0.99, microbatch=None, renorm_clip=None):
    """The norm every layer of a network applies, chosen once: a function
    `(h, training, data_format) -> h`, or None for `norm=None`.

    norm: "batch_norm", "batch_renorm" or None.
    momentum: the moving statistics move by (1 - momentum) each step.
    microbatch: normalise groups of this many consecutive examples in
      training (ghost batch norm; see `batch_renorm.batch_renorm`).
    renorm_clip: `(rmax, dmax)` for batch renorm (None: the default
      schedule of the global step).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm is None:
        return None
    if norm == "batch_norm":
        return functools.partial(_batch_norm, momentum=momentum,
                                 microbatch=microbatch, name="batch_norm")
    rmax, dmax = renorm_clip or (None, None)
    return functools.partial(_batch_renorm, rmax=rmax, dmax=dmax,
                             momentum=momentum, microbatch=microbatch,
                             name="batch_renorm")


@dataclasses.dataclass(frozen=True, eq=False)
class Settings:
    """What every layer of a network shares, chosen once and handed to each
    wrapper in place of `training` (tf-slim's `arg_scope`, as one object).

    Attributes:
      training: a Python bool, or a scalar bool tensor choosing at run time.
      normalizer: the norm every layer applies (`normalizer_for`), or None
        (a bias instead).
      data_format: "NHWC" or "NCHW", the layout the layers compute in.

    Typical use:
        settings = Settings(True, normalizer_for("batch_renorm"), "NCHW")
        h = conv_layer(images, 16, settings, name="conv")
        h = resnet_block(h, 32, settings, strides=2, name="b1")
    """
    training: Any
    normalizer: Optional[Callable] = None
    data_format: str = "NHWC"

    def __post_init__(self):
        check_data_format(self.data_format)


def conv_layer(inputs, filters, training, kernel_size=3, strides=1,
               batch_norm=False, batch_renorm=False, normalizer=None,
               activation=tf.nn.relu, dropout_rate=0.0, pool=None,
               data_format=None, name=None):
    """A 'SAME'-padded 2-D convolution of `inputs`, then the flags' ops.

    `training` is a Python bool or a bool tensor, or a `Settings` that also
    gives the norm and the layout (then leave the flags batch_norm,
    batch_renorm, normalizer and data_format out). The flags `batch_norm`
    and `batch_renorm` add the norm with its defaults; `normalizer` (from
    `normalizer_for`) is the same choice with its settings; `data_format`
    is "NHWC" (None) or "NCHW". It has a bias only without a norm (the
    norm's beta takes its place).
    """
    settings = _settings(training, batch_norm, batch_renorm, normalizer,
                         data_format)
    check_flags(dropout_rate, pool)
    with tf1.variable_scope(name, default_name="conv"):
        kernel = _kernel([kernel_size, kernel_size,
                          channels(inputs, settings.data_format), filters])
        h = tf.nn.conv2d(inputs, kernel, strides, padding="SAME",
                         data_format=settings.data_format)
        return _bias_norm_activation(h, settings, activation, dropout_rate,
                                     pool)


def dense_layer(inputs, units, training, batch_norm=False, batch_renorm=False,
                normalizer=None, activation=tf.nn.relu, dropout_rate=0.0,
                data_format=None, name=None):
    """A fully connected layer; a 4-D input (in the layout) is flattened
    first, in H, W, C order for either layout: the kernel is the same.
    `training` and the flags as `conv_layer`'s."""
    settings = _settings(training, batch_norm, batch_renorm, normalizer,
                         data_format)
    check_flags(dropout_rate, None)
    with tf1.variable_scope(name, default_name="dense"):
        if inputs.shape.rank == 4 and settings.data_format == "NCHW":
            inputs = tf.transpose(inputs, [0, 2, 3, 1])
        if inputs.shape.rank != 2:
            inputs = tf.reshape(inputs, [-1, inputs.shape[1:].num_elements()])
        h = tf.matmul(inputs, _kernel([inputs.shape[-1], units]))
        return _bias_norm_activation(
            h, dataclasses.replace(settings, data_format="NHWC"), activation,
            dropout_rate, None)


def resnet_block(inputs, filters, training, strides=1, shortcut="A",
                 batch_norm=False, batch_renorm=False, normalizer=None,
                 dropout_rate=0.0, pool=None, data_format=None, name=None):
    """The basic residual block: two 3x3 convolutions and a shortcut.

    y = relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)), then dropout and
    pooling if asked. The shortcut is the identity while the shape holds; on
    a change of size, option "A" subsamples and zero-pads the channels (the
    paper's CIFAR choice, no parameters), option "B" is a 1x1 projection.
    `training` and the flags as `conv_layer`'s.
    """
    block = _block(training, batch_norm, batch_renorm, normalizer,
                   data_format, shortcut, dropout_rate, pool)
    with tf1.variable_scope(name, default_name="block"):
        h = block.conv(inputs, filters, strides=strides, name="conv1")
        h = block.conv(h, filters, activation=None, name="conv2")
        return _residual_output(h, inputs, filters, strides, block)


def bottleneck_block(inputs, filters, training, strides=1, shortcut="B",
                     batch_norm=False, batch_renorm=False, normalizer=None,
                     dropout_rate=0.0, pool=None, data_format=None,
                     name=None):
    """The bottleneck residual block of the deeper ImageNet ResNets (He et
    al. 2015, Figure 5 right): a 1x1 convolution to filters / 4 channels, a
    3x3 one and a 1x1 one back to `filters`, plus the shortcut (as
    `resnet_block`'s; "B", the projection, is the paper's ImageNet choice).
    The stride is on the 3x3 convolution, as in fb.resnet.torch and
    TensorFlow's official ResNet (the paper's Caffe model strides the first
    1x1; the parameters are the same). `training` and the flags as
    `conv_layer`'s.
    """
    if filters % 4:
        raise ValueError(f"a bottleneck block's filters must be a multiple "
                         f"of 4 (its inner width is filters / 4), got "
                         f"{filters}")
    block = _block(training, batch_norm, batch_renorm, normalizer,
                   data_format, shortcut, dropout_rate, pool)
    with tf1.variable_scope(name, default_name="bottleneck"):
        h = block.conv(inputs, filters // 4, kernel_size=1, name="conv1")
        h = block.conv(h, filters // 4, strides=strides, name="conv2")
        h = block.conv(h, filters, kernel_size=1, activation=None,
                       name="conv3")
        return _residual_output(h, inputs, filters, strides, block)


# A block's checked settings: the conv_layer its convolutions share, and
# what follows their sum.
_Block = collections.namedtuple("_Block", "settings conv shortcut "
                                "dropout_rate pool")


def _block(training, batch_norm, batch_renorm, normalizer, data_format,
           shortcut, dropout_rate, pool):
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got "
                         f"{shortcut!r}")
    check_flags(dropout_rate, pool)
    settings = _settings(training, batch_norm, batch_renorm, normalizer,
                         data_format)
    return _Block(settings, functools.partial(conv_layer, training=settings),
                  shortcut, dropout_rate, pool)


def _residual_output(h, inputs, filters, strides, block):
    """relu(h + shortcut(inputs)), then the block's dropout and pooling."""
    data_format = block.settings.data_format
    in_filters = channels(inputs, data_format)
    if strides == 1 and in_filters == filters:
        skip = inputs
    elif block.shortcut == "A":
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
        skip = block.conv(inputs, filters, kernel_size=1, strides=strides,
                          activation=None, name="projection")
    h = tf.nn.relu(h + skip)
    h = _dropout_and_pool(h, block.settings, block.dropout_rate, block.pool)
    return tf.identity(h, name="output")


def _settings(training, batch_norm, batch_renorm, normalizer, data_format):
    """The `Settings` a wrapper computes with: `training` if it is one
    (the flags left out), else made of the flags."""
    if isinstance(training, Settings):
        if batch_norm or batch_renorm or normalizer is not None or (
                data_format is not None):
            raise ValueError("with Settings, give the norm and the layout "
                             "in them, not as flags")
        return training
    if bool(batch_norm) + bool(batch_renorm) + (normalizer is not None) > 1:
        raise ValueError("batch_norm, batch_renorm and normalizer are "
                         "exclusive: choose one")
    if normalizer is None:
        normalizer = normalizer_for("batch_norm" if batch_norm else
                                    "batch_renorm" if batch_renorm else None)
    return Settings(training, normalizer, data_format or "NHWC")


def check_flags(dropout_rate, pool):
    """Raises ValueError unless the wrappers' shared flags are ones they
    take: a dropout rate in [0, 1) and one of POOLS."""
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


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


def _bias_norm_activation(h, settings, activation, dropout_rate, pool):
    """What follows a conv or dense layer's product: a bias (without a
    norm), the norm, the activation, dropout and pooling."""
    if settings.normalizer is None:
        h = tf.nn.bias_add(h, _bias(channels(h, settings.data_format)),
                           data_format=settings.data_format)
    else:
        h = settings.normalizer(h, settings.training,
                                data_format=settings.data_format)
    h = activation(h) if activation is not None else h
    return _dropout_and_pool(h, settings, dropout_rate, pool)


def _dropout_and_pool(h, settings, rate, pool):
    training = settings.training
    if rate > 0.0 and training is not False:
        dropped = _stateless_dropout(h, rate)
        h = dropped if training is True else tf.cond(
            training, lambda: dropped, lambda: h)
    if pool is not None:
        pool_op = tf.nn.avg_pool2d if pool == "avg" else tf.nn.max_pool2d
        h = pool_op(h, ksize=3 if pool == "max3" else 2, strides=2,
                    padding="SAME", data_format=settings.data_format)
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
