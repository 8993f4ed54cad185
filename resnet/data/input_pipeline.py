"""The in-graph training input: in-memory arrays, a seeded order per epoch,
augmentation in the graph.

Everything random is a pure function of (seed, epoch, position): the order
of an epoch is `epoch_order(seed, epoch, n)` (or, for non-i.i.d. batches,
`non_iid_order`), and batch b of the run is
augmented with stateless ops seeded by (seed, b), b being the global step
that consumes it. A run resumed at any step therefore sees the very batches
the uninterrupted run would have.

Typical use:
    pipeline = TrainInput(x_train, y_train, seed=0, augment=True)
    logits = network(pipeline.images, training=True)
    pipeline.load(session)                       # once per session
    pipeline.start_epoch(session, epoch, batch_size, position, first_step)
"""
import numpy as np
from batch_renorm.tensorflow_quiet import tf

from resnet.errors import UsageError
from resnet.runtime.session_config import usable_cores

tf1 = tf.compat.v1

PAD = 4  # pixels of zero padding before the random crop (He et al. 2015)


def epoch_order(seed, epoch, size):
    """The order in which epoch `epoch` visits the `size` training examples."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def non_iid_order(seed, epoch, labels, batch_size, classes_per_group,
                  group_size=None):
    """An epoch's order in which every run of `group_size` examples (a
    normalisation group; default the whole batch) comes from
    `classes_per_group` classes, group_size / classes_per_group images of
    each, while the batch of `batch_size` as a whole stays class-balanced:
    the non-i.i.d. groups of the batch renorm paper (section 4.3), where one
    worker's 32 hold 16 labels x 2 images and the gradient of the 50
    workers' 1,600 covers most classes.

    Each batch has `batch_size / group_size * classes_per_group` class
    slots, dealt as evenly as the classes allow (the extra slots go to the
    classes with the most images left, ties broken at random) and in a
    random order to the groups, so that no group holds a class twice.
    Within a group the images come one of each class, then the next one of
    each: its two halves hold one image of each same-label pair. Images are
    drawn without replacement; the epoch ends before the first batch a
    class can no longer fill.
    """
    group_size = group_size or batch_size
    check_groups(batch_size, classes_per_group, group_size)
    classes = np.unique(labels)
    check_classes(classes_per_group, len(classes))
    rng = np.random.default_rng([seed, epoch])
    per_class = group_size // classes_per_group
    groups = batch_size // group_size
    pools = [list(rng.permutation(np.flatnonzero(labels == c)))
             for c in classes]
    base, extra = divmod(groups * classes_per_group, len(classes))
    batches = []
    while True:
        # The fullest classes first, ties at random.
        shuffled = rng.permutation(len(classes))
        order = shuffled[np.argsort([-len(pools[c]) for c in shuffled],
                                    kind="stable")]
        counts = base + (np.arange(len(classes)) < extra)
        if any(len(pools[c]) < n * per_class for c, n in zip(order, counts)):
            break
        # Slot i goes to group i % groups: a class's slots are consecutive
        # and at most `groups` of them, so they land in distinct groups.
        slots = np.repeat(order, counts).reshape(classes_per_group, groups).T
        batch = [np.array([[pools[c].pop() for _ in range(per_class)]
                           for c in slots[g]]).T.ravel()
                 for g in rng.permutation(groups)]
        batches.append(np.concatenate(batch))
    return np.concatenate(batches) if batches else np.zeros([0], np.int64)


def check_classes(classes_per_group, num_classes):
    """Raises UsageError unless groups of `classes_per_group` classes can be
    drawn from `num_classes`."""
    if classes_per_group > num_classes:
        raise UsageError(f"classes_per_group must be at most the data's "
                         f"{num_classes} classes, got {classes_per_group}")


def check_groups(batch_size, classes_per_group, group_size):
    """Raises UsageError (a ValueError) unless groups of `group_size`
    (None: the batch) from `classes_per_group` classes fill a batch
    evenly."""
    group_size = group_size or batch_size
    if batch_size % group_size:
        raise UsageError(f"batch_size ({batch_size}) must be a multiple of "
                         f"group_size ({group_size})")
    if group_size % classes_per_group:
        raise UsageError(f"group_size ({group_size}) must be a multiple of "
                         f"classes_per_group ({classes_per_group})")


def check_batches(batch_size, microbatch=None, parts=1, train_size=None,
                  norm_positions=None):
    """Raises UsageError (a ValueError) unless `parts` workers can split a
    batch of `batch_size` and microbatches divide every worker's slice (an
    epoch's last batch is trimmed to fit: `epoch_indices`), and unless every
    normalisation group has more than one value per channel: with
    `norm_positions` (`Network.fewest_norm_positions`) of 1, a group of one
    example, or an epoch's last batch of `train_size` examples leaving one
    per worker, would make the norm's output beta whatever its input."""
    if batch_size % parts:
        raise UsageError(f"batch_size ({batch_size}) must be a multiple of "
                         f"the {parts} workers")
    unit = trim_unit(parts, microbatch)
    if train_size is not None and not batches_per_epoch(train_size,
                                                         batch_size, unit):
        raise UsageError(f"{train_size} training examples make no batch: an "
                         f"epoch's last batch is trimmed to a multiple of "
                         f"{unit} (workers x microbatch)")
    if norm_positions == 1:
        last = (train_size or 0) % batch_size
        last -= last % unit
        if microbatch == 1:
            hint = "use a larger microbatch"
        elif batch_size // parts == 1:
            hint = "use a larger batch size"
        elif not microbatch and last == parts:
            hint = (f"choose another batch size: the epoch's last batch "
                    f"({train_size} examples) leaves one example per worker")
        else:
            hint = None
        if hint:
            raise UsageError(
                f"a norm of the network takes its statistics over one value "
                f"per example (a dense layer, or a 1x1 map) and would see "
                f"groups of one example, whose variance is 0 (its output "
                f"would be beta whatever its input): {hint}")
    if microbatch and batch_size // parts % microbatch:
        raise UsageError(
            f"with microbatches of {microbatch}, batch_size ({batch_size}) "
            + (f"must be a multiple of {microbatch}" if parts == 1 else
               f"must give each of the {parts} workers a multiple of "
               f"{microbatch}"))


def trim_unit(parts=1, microbatch=None):
    """What an epoch's last batch is trimmed to a multiple of: every worker
    gets an equal slice, made of whole microbatches."""
    return parts * (microbatch or 1)


def batches_per_epoch(train_size, batch_size, unit=1):
    """The batches of an epoch of `train_size` examples, its last one
    trimmed to a multiple of `unit` (`trim_unit`; none left if shorter)."""
    last = train_size % batch_size
    return train_size // batch_size + (last >= unit)


def parallel_calls():
    """A parallel map's `num_parallel_calls`: one per usable core, or None
    (a plain map) under op determinism, where TensorFlow rewrites a
    parallel map into a plain one, logging a C++ error line."""
    from tensorflow.python.framework import config  # no public query
    return None if config.is_op_determinism_enabled() else usable_cores()


def epoch_iterator(batches):
    """An initializable iterator over `batches` (re-initialised for every
    epoch), two batches prefetched while a step runs, its map calls on a
    pool of its own (a thread per usable core), not on the session's
    inter-op threads (one for large steps).

    tf.data's autotuning is off: with it on (even with no AUTOTUNE
    argument in the pipeline), re-initialising the iterator now and then
    stalled for 0.3-1.6 s instead of ~10 ms, and within an epoch there is
    nothing for it to tune that two batches and a map call per core leave.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = usable_cores()
    return tf1.data.make_initializable_iterator(
        batches.prefetch(2).with_options(options))


def pad_crop_flip(images, seed, pad=PAD):
    """Pads a batch of NHWC images by `pad` zero pixels, crops each back to
    its size at a random offset and flips half of them left-right: the
    CIFAR-10 augmentation of He et al. 2015. `seed` is an int64 [2] tensor.
    """
    count = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    offset_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform([2, count], offset_seed, minval=0,
                                          maxval=2 * pad + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([count, 1], flip_seed, minval=0,
                                       maxval=2, dtype=tf.int32) > 0
    rows = offsets[0][:, None] + tf.range(height)[None, :]
    columns = offsets[1][:, None] + tf.range(width)[None, :]
    columns = tf.where(flip, tf.reverse(columns, axis=[1]), columns)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    # One gather per axis crops (and flips) every image at its own offset.
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, columns, axis=2, batch_dims=1)


class Input:
    """A training input: what `loop.train` and the runner read of it.

    Attributes:
      images [B, H, W, C] float32 and labels [B] int64: the next batch's
        tensors (this worker's slice of it), advanced by each step.

    Subclasses (`TrainInput`, `files.FileInput`) build the tensors and
    define `start_epoch`; the order of every epoch is the same pure
    function of (seed, epoch) for both (`epoch_indices`).

    Args:
      labels: [N] int64, the training labels (the order's classes).
      seed: the order's and the augmentation's seed.
      classes_per_group, group_size: non-i.i.d. groups
        (`non_iid_order`), or None.
      part: (index, parts): this worker's slice of every batch.
      microbatch: the norms' groups (an epoch's last batch is trimmed to a
        multiple of parts x microbatch), or None.
    """
    images = labels = None

    def __init__(self, labels, seed, classes_per_group=None, group_size=None,
                 part=(0, 1), microbatch=None):
        self._labels, self._seed = labels, seed
        self._classes_per_group, self._group_size = (classes_per_group,
                                                     group_size)
        self._part, self._parts = part
        self._unit = trim_unit(self._parts, microbatch)

    def load(self, session):
        """Loads what the input reads into `session` (once per session)."""

    def explain(self, error, step):
        """An `errors.DatasetError` naming the example that `error`, raised
        by a step, could not read, or None if the error is not the input's
        (`step()` gives the failed step)."""
        return None

    def start_epoch(self, session, epoch, batch_size, position, first_step):
        """Starts epoch `epoch` at batch `position`; its first batch is
        consumed by global step `first_step`. Returns the number of
        batches left in the epoch."""
        raise NotImplementedError

    def epoch_order(self, epoch, batch_size, position):
        """The examples epoch `epoch` visits from batch `position` on
        (`epoch_indices`)."""
        return epoch_indices(self._seed, epoch, self._labels, batch_size,
                             position, self._unit, self._classes_per_group,
                             self._group_size)


class TrainInput(Input):
    """Batches `images` [B, H, W, C] and `labels` [B] from in-memory arrays.

    With `part=(index, parts)`, a data-parallel worker's slice: batch b of
    the run is the one-process batch b, cut into `parts` equal slices, and
    this is slice `index`. Each epoch's last batch is trimmed to a multiple
    of `parts` x `microbatch` (the norms' groups).

    The arrays live in variables that are never saved, filled once by `load`; each
    epoch feeds only its order of indices, never a batch.
    """

    def __init__(self, x, y, seed, augment, classes_per_group=None,
                 group_size=None, part=(0, 1), microbatch=None):
        super().__init__(y, seed, classes_per_group, group_size, part,
                         microbatch)
        self._x = x
        with tf1.name_scope("input"):
            self._x_value = tf1.placeholder(tf.float32, x.shape, "x_value")
            self._y_value = tf1.placeholder(tf.int64, y.shape, "y_value")
            x_var, y_var = [
                # In no collection: no initializer nor Saver touches them.
                tf1.Variable(value, trainable=False, name=name,
                             collections=[])
                for value, name in ((self._x_value, "x"),
                                    (self._y_value, "y"))]
            self._order = tf1.placeholder(tf.int64, [None], "order")
            self._batch_size = tf1.placeholder(tf.int64, [], "batch_size")
            self._first_step = tf1.placeholder(tf.int64, [], "first_step")

            def load_batch(indices, step):
                images = tf.gather(x_var, indices)
                if augment:
                    images = pad_crop_flip(
                        images, tf.stack([tf.constant(seed, tf.int64), step]))
                labels = tf.gather(y_var, indices)
                if self._parts > 1:
                    # This worker's slice of the global batch, augmented as
                    # in one process.
                    size = tf.shape(indices)[0] // self._parts
                    start = self._part * size
                    images = images[start:start + size]
                    labels = labels[start:start + size]
                return images, labels

            batches = tf.data.Dataset.zip((
                tf.data.Dataset.from_tensor_slices(self._order)
                .batch(self._batch_size),
                tf.data.Dataset.range(self._first_step, np.iinfo(np.int64).max)))
            batches = batches.map(load_batch, parallel_calls(),
                                  deterministic=True)
            self._iterator = epoch_iterator(batches)
            self.images, self.labels = self._iterator.get_next()
            self.images.set_shape([None, *x.shape[1:]])
            self.labels.set_shape([None])
        self._load_op = tf.group(x_var.initializer, y_var.initializer)

    def load(self, session):
        """Fills the arrays' variables (they are never saved)."""
        session.run(self._load_op, {self._x_value: self._x,
                                    self._y_value: self._labels})

    def start_epoch(self, session, epoch, batch_size, position, first_step):
        order = self.epoch_order(epoch, batch_size, position)
        session.run(self._iterator.initializer, {
            self._order: order, self._batch_size: batch_size,
            self._first_step: first_step})
        return -(-len(order) // batch_size)


def epoch_indices(seed, epoch, labels, batch_size, position, unit=1,
                  classes_per_group=None, group_size=None):
    """The examples (indices into `labels`) epoch `epoch` visits from batch
    `position` on: its seeded order (`epoch_order`, or `non_iid_order`
    with `classes_per_group`), with the last batch trimmed to a multiple
    of `unit` (`trim_unit`: an epoch leaves out at most unit - 1
    examples)."""
    if classes_per_group:
        order = non_iid_order(seed, epoch, labels, batch_size,
                              classes_per_group, group_size)
    else:
        order = epoch_order(seed, epoch, len(labels))
    order = order[position * batch_size:]
    if unit > 1:
        last = len(order) % batch_size
        order = order[:len(order) - last % unit]
    return order


class Normalizer:
    """images -> (images - mean) / std per channel: float32 `mean`, `std`
    [C], kept with a model (`as_dict`, `from_dict`) so that its resume
    and export normalise as its training did, whatever the data became."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, images):
        return (images - self.mean) / self.std

    def as_dict(self):
        """JSON-able, exact: float32 values as Python floats."""
        return {"mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, values):
        return cls(values["mean"], values["std"])


def per_channel_normalizer(x):
    """The `Normalizer` of the NHWC array x (the training images)."""
    return Normalizer(x.mean(axis=(0, 1, 2)),
                      np.maximum(x.std(axis=(0, 1, 2)), 1e-6))
