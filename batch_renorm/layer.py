"""Batch normalization and batch renormalization for `tf.compat.v1` graphs.

References:
  Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network
  Training by Reducing Internal Covariate Shift".
  Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence
  in Batch-Normalized Models", Algorithm 1.

Both layers keep the state of Algorithm 1, in the layer's variable scope:
  gamma, beta              trainable scale and offset (if `scale`, `center`)
  moving_mean, moving_std  mu and sigma: the moving mean and the moving
                           standard deviation (epsilon inside), initialised
                           to 0 and 1; global, non-trainable, saved by a Saver.
The moving statistics move by Algorithm 1's constant alpha = 1 - momentum
each training step. Asked (`fast_start=True`, or `use_fast_start(graph)`
for every layer of a graph), they start faster, with
`schedule.average_decay`'s decay min(momentum, (1 + t) / (10 + t)) at
global step t, TensorFlow's `num_updates` rule: alpha = 0.9 at step 0,
the constant from step ~9 / (1 - momentum) on (890 at 0.99). After a run
shorter than their memory they then hold the network's statistics rather
than mostly their initial 0 and 1; r and d read them, so a renorm ramp
that opens before then sees fresher mu and sigma than Algorithm 1's. The
runner (`resnet.train.graphs.build_training`) asks for it by default.
`batch_norm` is the same layer with r = 1 and d = 0, so the two differ only
in the correction the paper adds. Building a layer with `training` true adds
its moving-statistics updates to `tf.compat.v1.GraphKeys.UPDATE_OPS`.

Both run the training branch on the fused kernel (`FusedBatchNormV3`).
Batch norm is one training-mode call. Batch renorm needs the batch's
statistics before it normalises: a gradient-free pass computes them (a
training-mode pass of the kernel, or reductions where those are faster:
`statistics_method`), then the kernel in inference mode normalises with
them, gamma * r as the scale and gamma * d + beta as the offset, and its
gradient is the training kernel's (through the batch mean and variance,
with r and d held constant): the paper's output and gradients at about the
cost of batch norm.

Typical use:
    y = batch_renorm(x, training=True)            # rmax/dmax from the schedule
    update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    train_op = tf.group(optimizer.minimize(loss), *update_ops, increment)
"""
import collections
import math
import numbers

from batch_renorm.tensorflow_quiet import tf

from batch_renorm.cpu import cpu_flags
from batch_renorm.replicas import replica_group
from batch_renorm.schedule import average_decay, renorm_schedule
from batch_renorm.step import step_value

tf1 = tf.compat.v1

DATA_FORMATS = ("NHWC", "NCHW")
_LAYERS_KEY = "batch_renorm_layers"
_DECAYS_KEY = "batch_renorm_average_decays"  # (momentum, decay tensor)
_FAST_START_KEY = "batch_renorm_fast_start"

NormLayer = collections.namedtuple(
    "NormLayer", "name gamma beta moving_mean moving_std r d clip "
    "batch_mean batch_std")
NormLayer.__doc__ = """A norm layer built for training: its scope name, its
variables, its r and d tensors and their bounds `clip` = (rmax, dmax) (r,
d and clip are None for batch norm; r and d also when `training` is a
tensor: they live inside a conditional), and the statistics [C] its moving
averages move toward (the batch's mean and sqrt(variance + epsilon); with
microbatches, the mean over the groups)."""


def norm_layers(graph=None):
    """The `NormLayer`s built for training in `graph` (default: the default
    graph), in build order: one per layer, however often it is reused."""
    return (graph or tf1.get_default_graph()).get_collection(_LAYERS_KEY)


def use_fast_start(graph=None):
    """Makes the layers built afterwards in `graph` (default: the default
    graph) whose `fast_start` is None start their moving statistics fast
    (see the module's docstring); without it they move by Algorithm 1's
    constant alpha. Idempotent; layers built before are unchanged."""
    graph = _outermost(graph or tf1.get_default_graph())
    if not graph.get_collection(_FAST_START_KEY):
        graph.add_to_collection(_FAST_START_KEY, True)


def batch_renorm(inputs, training, rmax=None, dmax=None, momentum=0.99,
                 epsilon=1e-3, center=True, scale=True, microbatch=None,
                 data_format="NHWC", fast_start=None, name=None):
    """Batch renormalization (Ioffe 2017, Algorithm 1).

    Args:
      inputs: float32 tensor, 4-D (statistics over N, H, W) or 2-D [N, C]
        (statistics over N).
      training: Python bool, or a scalar bool tensor choosing at run time.
      rmax, dmax: clipping bounds for r and d, floats or scalar tensors. When
        None, `renorm_schedule` of the graph's global step gives them.
      momentum: the moving statistics move by alpha = 1 - momentum each
        training step (Algorithm 1).
      epsilon: added to the batch variance.
      center, scale: whether to learn beta and gamma.
      microbatch: if set, training normalises each group of `microbatch`
        consecutive examples with its own statistics, r and d (the paper's
        microbatches, section 4.2; what others call ghost batch norm or
        `virtual_batch_size`); the moving statistics move toward the groups'
        mean statistics. The batch size must be a multiple of it. Inference
        is unchanged.
      data_format: "NHWC" (channels last) or "NCHW" (channels first, the
        faster layout on a GPU) for 4-D inputs.
      fast_start: True: the moving statistics move by
        1 - `schedule.average_decay(momentum, step)`, faster in the first
        ~9 / (1 - momentum) steps, then as Algorithm 1; False: Algorithm 1's
        constant alpha from the first step; None: the graph's choice
        (`use_fast_start`), False unless made.
      name: variable scope of the layer; reuse it (`reuse=True` in an outer
        scope) to share the variables, e.g. between a training and an
        inference graph. Default: a unique "batch_renorm", "batch_renorm_1"...

    Returns:
      A tensor of the same shape as `inputs`. With `training` true, the
      layer's variables and its r and d tensors are in `norm_layers()`.

    Raises:
      ValueError: inputs of another dtype or rank, an unknown channel
        count, or an argument out of its range.
    """
    if rmax is None or dmax is None:
        rmax_t, dmax_t = renorm_schedule(step_value(_graph_of(inputs)))
        rmax = rmax_t if rmax is None else rmax
        dmax = dmax_t if dmax is None else dmax
    return _normalize(inputs, training, (rmax, dmax), _Options(
        momentum, epsilon, center, scale, microbatch, data_format, fast_start,
        name, "batch_renorm"))


def batch_norm(inputs, training, momentum=0.99, epsilon=1e-3, center=True,
               scale=True, microbatch=None, data_format="NHWC",
               fast_start=None, name=None):
    """Batch normalization: `batch_renorm` with r = 1 and d = 0.

    Same arguments, variables and update ops as `batch_renorm`, whose
    moving standard deviation it keeps too.
    """
    return _normalize(inputs, training, None, _Options(
        momentum, epsilon, center, scale, microbatch, data_format, fast_start,
        name, "batch_norm"))


def _graph_of(inputs):
    return getattr(inputs, "graph", None) or tf1.get_default_graph()


# A layer's arguments besides its input, `training` and `clip`, and its
# `kind` ("batch_renorm" or "batch_norm": its default name).
_Options = collections.namedtuple(
    "_Options", "momentum epsilon center scale microbatch data_format "
    "fast_start name kind")


def _check_arguments(inputs, clip, options):
    (momentum, epsilon, _, _, microbatch, data_format, fast_start, name,
     kind) = options
    name = name or kind
    if inputs.dtype != tf.float32:
        raise ValueError(f"{name}: inputs must be float32, got {inputs.dtype.name}")
    if inputs.shape.rank not in (2, 4):
        raise ValueError(f"{name}: inputs must be 2-D [N, C] or 4-D, "
                         f"got shape {inputs.shape}")
    check_data_format(data_format, name)
    if channels(inputs, data_format) is None:
        raise ValueError(f"{name}: the channel dimension of {data_format} "
                         f"inputs must be known, got shape {inputs.shape}")
    if not 0 <= momentum < 1:
        raise ValueError(f"{name}: momentum must be in [0, 1), got {momentum}")
    if not epsilon > 0:
        raise ValueError(f"{name}: epsilon must be > 0, got {epsilon}")
    if microbatch is not None and (not isinstance(microbatch, int)
                                   or microbatch < 1):
        raise ValueError(f"{name}: microbatch must be an integer >= 1 or "
                         f"None, got {microbatch!r}")
    if fast_start not in (None, True, False):
        raise ValueError(f"{name}: fast_start must be True, False or None, "
                         f"got {fast_start!r}")
    if clip is not None:
        rmax, dmax = clip
        if isinstance(rmax, numbers.Real) and rmax < 1:
            raise ValueError(f"{name}: rmax must be >= 1, got {rmax}")
        if isinstance(dmax, numbers.Real) and dmax < 0:
            raise ValueError(f"{name}: dmax must be >= 0, got {dmax}")


def clipping_statistics(layer):
    """Scalar tensors of a batch renorm `NormLayer` in a training step:
    r_mean, d_abs_mean (mean r and mean |d| over channels, and microbatches),
    r_clipped and d_clipped (the fraction of r at 1/rmax or rmax, and of d
    at -dmax or dmax). The paper judges its settings by the last two: "a
    small fraction of r values and no d values" clipped at the end of
    training. Bounds of 1 and 0 (the warm-up) count as all clipped."""
    rmax, dmax = (tf.cast(bound, tf.float32) for bound in layer.clip)
    slack = 1.0 - 1e-6  # a bound computed in float32 or in float64

    def fraction(at_bound):
        return tf.reduce_mean(tf.cast(at_bound, tf.float32))

    return {"r_mean": tf.reduce_mean(layer.r),
            "d_abs_mean": tf.reduce_mean(tf.abs(layer.d)),
            "r_clipped": fraction((layer.r >= rmax * slack)
                                  | (layer.r * slack <= 1.0 / rmax)),
            "d_clipped": fraction(tf.abs(layer.d) >= dmax * slack)}


def check_data_format(data_format, name=None):
    """Raises ValueError unless `data_format` is one of DATA_FORMATS; the
    message starts with the layer's `name`, if given."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{name + ': ' if name else ''}data_format must be "
                         f"one of {DATA_FORMATS}, got {data_format!r}")


def channels(inputs, data_format):
    """The channel count of 2-D [N, C] or 4-D `data_format` inputs."""
    return inputs.shape[1 if inputs.shape.rank == 4 and data_format == "NCHW"
                        else -1]


def _normalize(inputs, training, clip, options):
    """The layer; `clip` is (rmax, dmax) for renorm, None for batch norm;
    `options` an `_Options`."""
    inputs = tf.convert_to_tensor(inputs)
    _check_arguments(inputs, clip, options)
    (momentum, epsilon, center, scale, microbatch, data_format, fast_start,
     name, default_name) = options
    size = channels(inputs, data_format)
    replicas = replica_group(inputs.graph)
    sync = bool(replicas and replicas.sync_statistics)
    if sync and microbatch:
        raise ValueError(f"{name or default_name}: synchronized statistics "
                         f"and microbatches exclude each other")
    with tf1.variable_scope(name, default_name=default_name):
        gamma = _variable("gamma", size, 1.0) if scale else tf.ones([size])
        beta = _variable("beta", size, 0.0) if center else tf.zeros([size])
        moving_mean = _variable("moving_mean", size, 0.0, trainable=False)
        moving_std = _variable("moving_std", size, 1.0, trainable=False)
        # One read of each, shared by r, d and the update, so the update
        # cannot overtake them in the same run.
        mean, std = moving_mean.read_value(), moving_std.read_value()

        if inputs.shape.rank == 4:
            x = inputs
        else:
            x, data_format = tf.reshape(inputs, [-1, 1, 1, size]), "NHWC"

        def train():
            if microbatch:
                return _grouped_train_branch(x, gamma, beta, mean, std, clip,
                                             epsilon, microbatch, data_format)
            if sync:
                return _synced_train_branch(x, gamma, beta, mean, std, clip,
                                            epsilon, data_format, replicas)
            return _train_branch(x, gamma, beta, mean, std, clip, epsilon,
                                 data_format)

        def infer():
            return (_infer_branch(x, gamma, beta, mean, std, epsilon,
                                  data_format), mean, std)

        r = d = None
        if training is True:
            y, batch_mean, batch_std, r, d = train()
        elif training is False:
            y, batch_mean, batch_std = infer()
        else:
            # In inference the "batch" statistics are the moving ones, so the
            # update below leaves them as they are.
            y, batch_mean, batch_std = tf.cond(training,
                                               lambda: train()[:3], infer)
        if training is not False:
            if fast_start is None:
                fast_start = bool(_outermost(inputs.graph).get_collection(
                    _FAST_START_KEY))
            # Algorithm 1's alpha is a constant: a float32 number in the
            # graph, the same bits as NumPy's float32(1 - momentum).
            alpha = (1.0 - _average_decay(inputs.graph, momentum)
                     if fast_start else 1.0 - momentum)
            scope = tf1.get_default_graph().get_name_scope()

            def updates(batch_mean, batch_std):
                with tf1.name_scope(scope + "/"):
                    return [
                        moving_mean.assign(mean + alpha * (batch_mean - mean),
                                           read_value=False,
                                           name="update_mean"),
                        moving_std.assign(std + alpha * (batch_std - std),
                                          read_value=False,
                                          name="update_std")]

            if replicas and not sync:
                # Each worker's statistics differ: the moving ones move by
                # their mean, the same on every worker; the train op
                # averages them with the gradients and makes the updates.
                replicas.mean_later([batch_mean, batch_std], updates)
            else:
                for op in updates(batch_mean, batch_std):
                    tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, op)
            tf1.add_to_collection(_LAYERS_KEY, NormLayer(
                tf1.get_variable_scope().name, gamma, beta, moving_mean,
                moving_std, r, d, clip, batch_mean, batch_std))
        y = y if inputs.shape.rank == 4 else tf.reshape(y, [-1, size])
        return tf.identity(y, name="output")


def _average_decay(graph, momentum):
    """`average_decay(momentum, step_value())`, built once per (outermost)
    graph and momentum: a step of a deep network runs one, not one per
    layer."""
    momentum = float(momentum)
    # In the outermost graph, outside any loop, condition or control
    # dependency the caller builds in: every later layer may read it.
    outer = _outermost(graph)
    with outer.as_default(), tf1.init_scope(), tf1.name_scope(None):
        for built, decay in outer.get_collection(_DECAYS_KEY):
            if built == momentum:
                return decay
        decay = average_decay(momentum, step_value(outer))
    outer.add_to_collection(_DECAYS_KEY, (momentum, decay))
    return decay


def _outermost(graph):
    """The graph that holds `graph` (a function's or loop's body), or
    `graph` itself."""
    with graph.as_default(), tf1.init_scope():
        return tf1.get_default_graph()


def _variable(name, channels, value, trainable=True):
    return tf1.get_variable(name, [channels], tf.float32,
                            tf1.constant_initializer(value),
                            trainable=trainable, use_resource=True)


def statistics_method():
    """How a batch renorm layer built now computes its batch's statistics,
    before it normalises with them (both precise: `_reduced_statistics`):
    "reductions" (sums of x and x^2) where oneDNN's kernels stop at AVX2
    and no GPU is visible: there its training-mode fused kernel takes
    about twice the two sums' time and writes an output besides (2.06 ms
    against 0.95 ms on [128, 32, 32, 16]); "fused" (a gradient-free
    training-mode pass of the fused kernel) elsewhere: on AVX-512, in
    bfloat16 (whose rewrite would take the sums to bfloat16) and on a GPU
    (whose gradient kernel reads other statistics). Chosen when the layer
    is built: a graph built with "reductions" must run on a CPU. The
    measurements: benchmarks/README.md, "Batch renorm's own cost"."""
    flags = cpu_flags()
    if ("avx2" in flags and "avx512f" not in flags
            and not tf.config.list_physical_devices("GPU")):
        return "reductions"
    return "fused"


Statistics = collections.namedtuple("Statistics", "mean variance reserved")
Statistics.__doc__ = """A batch's statistics: mean and biased variance per
channel, and what the fused gradient kernel reads of the pass that computed
them (`reserve_space_1` to `_3` of FusedBatchNormV3)."""


def _train_branch(x, gamma, beta, mean, std, clip, epsilon, data_format):
    """Returns (y, batch mean, batch std, r, d) of Algorithm 1's training
    step; r and d are None for batch norm (clip None)."""
    if clip is None:
        return (*_fused_train(x, gamma, beta, epsilon, data_format), None,
                None)
    # r and d need the batch statistics before the normalisation that uses
    # them: a first, gradient-free pass computes them.
    stats = _batch_statistics(tf.stop_gradient(x), epsilon, data_format)
    batch_std = tf.sqrt(stats.variance + epsilon)
    r, d = _corrections(stats.mean, batch_std, mean, std, clip)
    gamma = tf.convert_to_tensor(gamma)  # one read for both uses
    y = _normalize_by(stats, x, gamma * r, gamma * d + beta, epsilon,
                      data_format)
    return y, stats.mean, batch_std, r, d


def _batch_statistics(x, epsilon, data_format):
    """The `Statistics` of a 4-D batch x, by `statistics_method()`."""
    if statistics_method() == "reductions":
        return _reduced_statistics(x, data_format)
    return _fused_statistics(x, epsilon, data_format)


def _fused_statistics(x, epsilon, data_format):
    """The `Statistics` of a 4-D batch x: the fused kernel in training mode
    with unit scale and zero offset."""
    size = _channel_count(x, data_format)
    out = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=tf.ones([size]), offset=tf.zeros([size]),
        mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=epsilon,
        data_format=data_format, is_training=True)
    return Statistics(out.batch_mean,
                      _biased(out.batch_variance, x, data_format),
                      out[3:])


# E[x^2] - E[x]^2 is kept where the variance is at least this fraction of
# E[x^2] (every channel's mean at most ~4 stds from zero): its relative
# error is then at most 1 / fraction times the sums' (those of x^2 and
# twice those of the mean: ~1e-7 to 1e-6 each, by the per-example sums'
# length).
_ONE_PASS_FLOOR = 1.0 / 16


def _reduced_statistics(x, data_format):
    """The `Statistics` of a 4-D batch x by reductions, each one read of x:
    per example, sums of x and of x^2 over its pixels (float32), then over
    the examples in float64. Their E[x^2] - E[x]^2 is kept where it is
    precise; a batch with a channel far from zero (mean over std above ~4)
    is summed again around its mean (name scope "around_mean"). The
    statistics leave float64 as float32: out of reach of a bfloat16
    rewrite, which would hand the kernels bfloat16 statistics (a fatal
    error)."""
    size, shape = _channel_count(x, data_format), tf.shape(x)
    if data_format == "NHWC":
        pixels = tf.reshape(x, [shape[0], shape[1] * shape[2], size])
        axis = 1
    else:
        pixels = tf.reshape(x, [shape[0], size, shape[2] * shape[3]])
        axis = 2
    count = tf.cast(_values_per_channel(x, data_format), tf.float64)

    def moments(values):
        sums = tf.cast(tf.reduce_sum(values, axis), tf.float64)
        squares = tf.square(tf.cast(
            tf.math.reduce_euclidean_norm(values, axis), tf.float64))
        return (tf.reduce_sum(sums, 0) / count,
                tf.reduce_sum(squares, 0) / count)

    mean, mean_square = moments(pixels)
    variance = mean_square - tf.square(mean)

    def around_mean():
        with tf.name_scope("around_mean"):
            shift = tf.cast(mean, tf.float32)
            offset, spread = moments(
                pixels - (shift[:, None] if axis == 2 else shift))
            return (tf.cast(shift, tf.float64) + offset,
                    spread - tf.square(offset))

    mean, variance = tf.cond(
        tf.reduce_all(variance >= _ONE_PASS_FLOOR * mean_square),
        lambda: (mean, variance), around_mean)
    mean, variance = (tf.cast(value, tf.float32) for value in (mean, variance))
    # What a CPU kernel keeps: the mean, the biased variance, nothing else.
    return Statistics(mean, variance, (mean, variance, tf.zeros([0])))


def _channel_count(x, data_format):
    """`channels` of a 4-D x, or a scalar tensor where it is known only at
    run time (microbatches: groups times channels)."""
    return _dimension(x, 1 if data_format == "NCHW" else -1)


def _dimension(x, axis):
    """x's size along `axis`: a Python int where it is known when the
    graph is built, else a scalar tensor read from x's shape."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _values_per_channel(x, data_format):
    """How many values each channel of a 4-D x holds, N * H * W: a Python
    int where x's shape is known when the graph is built, else an int32
    tensor with the unknown sizes read from x's shape. Not `tf.size(x)`
    (nor a product of `tf.shape(x)`, which Grappler turns into one): of a
    partly unknown shape that is a Size op, which the bfloat16 rewrite
    feeds with a float32 copy of x."""
    sizes = [_dimension(x, axis)
             for axis in ((0, 2, 3) if data_format == "NCHW" else (0, 1, 2))]
    # The known ones first, as one number: a single Mul per unknown one.
    count = math.prod(size for size in sizes if isinstance(size, int))
    for size in sizes:
        if not isinstance(size, int):
            count *= size
    return count


def _normalize_by(stats, x, scale, offset, epsilon, data_format):
    """scale * (x - mean) / sqrt(variance + epsilon) + offset with the
    batch's `stats`, by the fused kernel in inference mode (one pass, no
    reduction), and its gradient as the training kernel's: through the
    batch's mean and variance, with scale and offset as given (r and d
    inside them stay constant)."""

    @tf.custom_gradient
    def normalize(x, scale, offset):
        y = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=stats.mean,
            variance=stats.variance, epsilon=epsilon,
            data_format=data_format, is_training=False).y

        def gradient(dy):
            grads = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=dy, x=x, scale=scale,
                reserve_space_1=stats.reserved[0],
                reserve_space_2=stats.reserved[1],
                reserve_space_3=stats.reserved[2], epsilon=epsilon,
                data_format=data_format, is_training=True)
            return grads[:3]

        return y, gradient

    return normalize(x, scale, offset)


def _synced_train_branch(x, gamma, beta, mean, std, clip, epsilon,
                         data_format, replicas):
    """Algorithm 1 with the moments of the whole global batch, summed over
    the workers by an all-reduce whose gradient is an all-reduce, so that
    every worker's gradient sees every worker's examples. Unfused: the
    fused kernel gives no gradient for moments passed in."""
    axes, shape = (([0, 1, 2], [1, 1, 1, -1]) if data_format == "NHWC"
                   else ([0, 2, 3], [1, -1, 1, 1]))
    count = tf.cast(_values_per_channel(x, data_format) * replicas.size,
                    tf.float32)
    batch_mean = replicas.sum_with_gradient(tf.reduce_sum(x, axes)) / count
    centred = x - tf.reshape(batch_mean, shape)
    batch_var = replicas.sum_with_gradient(
        tf.reduce_sum(tf.square(centred), axes)) / count
    batch_std = tf.sqrt(batch_var + epsilon)
    x_hat = centred / tf.reshape(batch_std, shape)
    r = d = None
    if clip is not None:
        r, d = _corrections(batch_mean, batch_std, mean, std, clip)
        x_hat = x_hat * tf.reshape(r, shape) + tf.reshape(d, shape)
    y = x_hat * tf.reshape(gamma, shape) + tf.reshape(beta, shape)
    return y, batch_mean, batch_std, r, d


def _grouped_train_branch(x, gamma, beta, mean, std, clip, epsilon,
                          microbatch, data_format):
    """Algorithm 1 per group of `microbatch` consecutive examples; returns
    (y, mean of the groups' means, mean of the groups' stds, r, d), r and d
    [groups, C] (None for batch norm).

    The groups become channels ([G * m, H, W, C] -> [m, H, W, G * C]), so
    that each group keeps its own statistics, r and d, and `_train_branch`
    computes them as it computes a whole batch's (and each worker of a
    data-parallel run its slice's), with gamma, beta and the moving
    statistics tiled G times.
    """
    if data_format == "NCHW":
        y, *rest = _grouped_train_branch(
            tf.transpose(x, [0, 2, 3, 1]), gamma, beta, mean, std, clip,
            epsilon, microbatch, "NHWC")
        return (tf.transpose(y, [0, 3, 1, 2]), *rest)
    shape, size = tf.shape(x), x.shape[-1]
    # As built where known (a shape tensor's entries lose them).
    height, width = _dimension(x, 1), _dimension(x, 2)
    check = tf.debugging.assert_equal(
        shape[0] % microbatch, 0, message=f"the batch size must be a "
        f"multiple of microbatch={microbatch}")
    with tf.control_dependencies([check]):
        groups = tf.reshape(x, [-1, microbatch, height, width, size])
    count = tf.shape(groups)[0]
    folded = tf.reshape(tf.transpose(groups, [1, 2, 3, 0, 4]),
                        [microbatch, height, width, count * size])

    def per_group(values):  # [G * C] -> [G, C]
        return tf.reshape(values, [count, size])

    def tiled(values):      # [C] -> [G * C]
        return tf.tile(values, [count])

    y, group_mean, group_std, r, d = _train_branch(
        folded, tiled(gamma), tiled(beta), tiled(mean), tiled(std), clip,
        epsilon, "NHWC")
    y = tf.reshape(y, [microbatch, height, width, count, size])
    y = tf.reshape(tf.transpose(y, [3, 0, 1, 2, 4]), shape)
    if clip is not None:
        r, d = per_group(r), per_group(d)
    return (y, tf.reduce_mean(per_group(group_mean), axis=0),
            tf.reduce_mean(per_group(group_std), axis=0), r, d)


def _corrections(batch_mean, batch_std, mean, std, clip):
    """r and d of Algorithm 1, constants for backprop: the batch statistics
    against the moving ones, clipped to (rmax, dmax) = clip."""
    rmax, dmax = clip
    r = tf.stop_gradient(
        tf.clip_by_value(batch_std / std, 1.0 / rmax, rmax), name="r")
    d = tf.stop_gradient(
        tf.clip_by_value((batch_mean - mean) / std, -dmax, dmax), name="d")
    return r, d


def _fused_train(x, scale, offset, epsilon, data_format):
    """The fused kernel in training mode: (y, batch mean, batch std)."""
    y, batch_mean, bessel_var = tf1.nn.fused_batch_norm(
        x, scale, offset, epsilon=epsilon, data_format=data_format,
        is_training=True)
    return y, batch_mean, tf.sqrt(_biased(bessel_var, x, data_format)
                                  + epsilon)


def _biased(bessel_variance, x, data_format):
    """The fused kernel normalises with the biased variance but returns the
    unbiased one; sigma_B is the biased one."""
    n = tf.cast(_values_per_channel(x, data_format), tf.float32)
    return bessel_variance * (n - 1.0) / n


def _infer_branch(x, gamma, beta, mean, std, epsilon, data_format):
    """gamma * (x - mu) / sigma + beta with the moving statistics."""
    # The fused kernel divides by sqrt(variance + epsilon); sigma already
    # holds epsilon, so hand it sigma^2 - epsilon.
    y, _, _ = tf1.nn.fused_batch_norm(
        x, gamma, beta, mean=mean, variance=tf.square(std) - epsilon,
        epsilon=epsilon, data_format=data_format, is_training=False)
    return y
