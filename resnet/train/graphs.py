"""Graph builders: the training graph and the inference graph of a network,
each a plain function that returns a small named tuple of what a run fetches.

They build into the default graph and share its one global step
(`batch_renorm.global_step`); call them once each, training first.

Typical use:
    graph = tf.Graph()
    with graph.as_default():
        pipeline = TrainInput(x, y, seed=0, augment=False)
        train = build_training(network, pipeline, TrainConfig())
        infer = build_inference(network, x.shape[1:])
        epochs = build_epoch_state()
    session.run(train.train_op)                       # one step
    session.run(infer.predictions, {infer.images: x[:10]})

Reference: official r1 `resnet_model_fn` (the graph for a mode) beside
`resnet_run_loop` (the loop).
"""
import collections

from batch_renorm.tensorflow_quiet import tf

from batch_renorm import global_step, norm_layers, step_value
from batch_renorm.layer import clipping_statistics, use_fast_start
from batch_renorm.replicas import replica_group
from resnet.train import optimization

tf1 = tf.compat.v1

Batch = collections.namedtuple("Batch", "images labels")
Batch.__doc__ = """A training batch: images [B, H, W, C] float32, labels [B]
int64 (a `TrainInput` has the same two fields)."""

TrainGraph = collections.namedtuple(
    "TrainGraph", "logits loss cross_entropy learning_rate train_op fetches "
    "summary renorm")
TrainGraph.__doc__ = """What `build_training` returns.

logits [B, classes]; loss (cross-entropy + weight decay, this worker's);
cross_entropy (of the global batch, averaged over the workers in a
data-parallel graph); learning_rate; train_op (the SGD step, the norms' updates and the step's
increment); fetches: a dict for `Session.run` of one step ("train",
"loss": the cross-entropy, "correct" and "count": right labels and images
in the batch); summary: the merged training summaries (TensorBoard);
renorm: the batch renorm layers' `clipping_statistics`, averaged over the
layers (an empty dict without batch renorm)."""

InferenceGraph = collections.namedtuple(
    "InferenceGraph", "images labels logits probabilities predictions "
    "loss_sum correct")
InferenceGraph.__doc__ = """What `build_inference` returns.

images [N, H, W, C] float32 and labels [N] int64 placeholders; logits,
probabilities [N, classes]; predictions [N] int64; loss_sum (the summed
cross-entropy) and correct (right labels) of a batch."""

EpochState = collections.namedtuple("EpochState", "epoch start_step end_epoch")
EpochState.__doc__ = """Where training is in the data, saved with the
checkpoints: the epoch under way, the global step it started at, and the op
that ends it (epoch + 1, start_step = the global step)."""


def build_training(network, batch, config, preprocess=None):
    """The training graph of `network` on a batch.

    Args:
      network: a `models.NetworkLike`.
      batch: a `Batch` or a `TrainInput`: images [B, H, W, C] float32,
        labels [B] int64.
      config: a `config.TrainConfig` (learning rate, momentum, decay, the
        norms' fast start).
      preprocess: maps images before the network (e.g.
        `input_pipeline.per_channel_normalizer`), or None.

    Returns:
      A `TrainGraph`.
    """
    _, increment = global_step()
    if config.fast_start:
        use_fast_start()
    images = preprocess(batch.images) if preprocess else batch.images
    built = len(norm_layers())
    logits = network(images, training=True)
    renorm_layers = [layer for layer in norm_layers()[built:]
                     if layer.r is not None]
    loss, cross_entropy = optimization.classification_loss(
        logits, batch.labels, config.weight_decay)
    learning_rate = optimization.step_learning_rate(
        step_value(), config.learning_rate, config.lr_boundaries,
        config.lr_decay)
    correct = tf.reduce_sum(tf.cast(tf.equal(
        tf.argmax(logits, axis=1), batch.labels), tf.int64))
    count = tf.size(batch.labels)
    accuracy = tf.cast(correct, tf.float32) / tf.cast(count, tf.float32)
    # What the run reports is the global batch's: in a data-parallel graph
    # the mean of the workers' means, from the step's one collective.
    train_op, reported = optimization.train_op(
        loss, learning_rate, config.momentum, increment,
        report={"cross_entropy": cross_entropy, "accuracy": accuracy})
    replicas = replica_group()
    if replicas:
        cross_entropy, accuracy = (reported["cross_entropy"],
                                   reported["accuracy"])
        count = count * replicas.size
        correct = accuracy * tf.cast(count, tf.float32)
    scalars = {"train/loss": cross_entropy, "train/accuracy": accuracy,
               "train/learning_rate": learning_rate}
    if renorm_layers:
        # The schedule's tensors the layers were built with: one per graph.
        rmax, dmax = renorm_layers[0].clip
        scalars.update({"renorm/rmax": rmax, "renorm/dmax": dmax})
    summaries = [tf1.summary.scalar(name, value)
                 for name, value in scalars.items()]
    renorm = {}
    if renorm_layers:
        # One chart per quantity: its mean over the layers, and its
        # distribution over the layers (readable at any depth).
        per_layer = [clipping_statistics(layer) for layer in renorm_layers]
        for key in per_layer[0]:
            values = tf.stack([statistics[key] for statistics in per_layer])
            renorm[key] = tf.reduce_mean(values)
            # A histogram refuses NaN (and would stop training): the
            # finite values only; the mean shows what is not.
            summaries += [tf1.summary.scalar(f"renorm/{key}", renorm[key]),
                          tf1.summary.histogram(
                              f"renorm_layers/{key}", tf.boolean_mask(
                                  values, tf.math.is_finite(values)))]
    fetches = {"train": train_op, "loss": cross_entropy, "correct": correct,
               "count": count}
    return TrainGraph(logits, loss, cross_entropy, learning_rate, train_op,
                      fetches, tf1.summary.merge(summaries), renorm)


def build_inference(network, image_shape, preprocess=None,
                    batch_statistics=False):
    """The inference graph of `network` (moving statistics, no dropout) on
    fed images of `image_shape` [H, W, C].

    With `batch_statistics`, the norms normalise each fed batch (or each of
    its microbatches) by its own statistics, as in training: a diagnostic
    of what the moving statistics cost. That graph is the network in
    training mode: its norms' update ops join UPDATE_OPS and its layers
    `norm_layers()` (with their batch statistics), but no train op runs
    them."""
    images = tf1.placeholder(tf.float32, [None, *image_shape], name="images")
    labels = tf1.placeholder(tf.int64, [None], name="labels")
    logits = network(preprocess(images) if preprocess else images,
                     training=bool(batch_statistics))
    predictions = tf.argmax(logits, axis=1, name="predictions")
    loss_sum = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits))
    correct = tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.int64))
    return InferenceGraph(images, labels, logits,
                          tf.nn.softmax(logits, name="probabilities"),
                          predictions, loss_sum, correct)


def build_epoch_state():
    """The epoch counter and the step the epoch under way started at."""
    step, _ = global_step()
    with tf1.name_scope("train_state"):
        epoch = tf1.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        start_step = tf1.Variable(0, dtype=tf.int64, trainable=False,
                                  name="epoch_start_step")
        end_epoch = tf.group(epoch.assign_add(1), start_step.assign(step),
                             name="end_epoch")
    return EpochState(epoch, start_step, end_epoch)
