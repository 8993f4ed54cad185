"""The run loops: training epochs with hooks, and batched inference.

`train` is short on purpose: every side job (checkpoints, summaries,
divergence, signals, progress, evaluation) is a hook (`resnet.train.hooks`) called
through TensorFlow 1's `SessionRunHook` interface.

Why not `tf.compat.v1.train.MonitoredSession`: it owns its session (ours
outlives a `train` call for `evaluate`, `predict` and the next `train`),
fixes its hooks when it is made (ours are per call), and restores with a
plain `Saver` (ours refuses another model's checkpoints and falls back past
a damaged one); it has no epochs. The interface is the same, so TensorFlow's
own hooks (`StepCounterHook`, `LoggingTensorHook`, ...) run here too.

Typical use:
    history = train(session, train_graph, epoch_state, pipeline,
                    batch_size=128, num_epoch=2, hooks=[...])
    metrics = evaluate(session, inference_graph,
                       in_batches(x_test, y_test, EVAL_BATCH_SIZE))
"""
import time

import numpy as np
from batch_renorm.tensorflow_quiet import tf

from batch_renorm import step_value
from resnet.train.hooks import EpochHook

tf1 = tf.compat.v1

EVAL_BATCH_SIZE = 500   # images per inference run, of 32x32 pixels or fewer


def eval_batch_size(image_shape):
    """Images per inference run: EVAL_BATCH_SIZE of 32x32 images, as many
    pixels of larger ones (10 of 224x224)."""
    height, width = image_shape[:2]
    return max(1, min(EVAL_BATCH_SIZE,
                      EVAL_BATCH_SIZE * 32 * 32 // (height * width)))


def train(session, train_graph, epoch_state, train_input, batch_size,
          num_epoch, hooks=()):
    """Trains `num_epoch` more epochs (finishing first an epoch under way)
    of `train_graph` (a `graphs.TrainGraph`) on `train_input` (a
    `TrainInput`); `epoch_state` is the graph's `graphs.EpochState`.

    Returns a list of one dict per epoch: epoch, step, loss, accuracy (on
    the training batches), seconds, images_per_second, and what hooks add.
    If a hook stops training mid-epoch, the last dict is that epoch's part.
    """
    hooks = list(hooks)
    epoch_hooks = [hook for hook in hooks if isinstance(hook, EpochHook)]
    history = []
    try:
        with session.graph.as_default():
            for hook in hooks:
                hook.begin()
            step_variable = tf1.train.get_global_step()
            # The snapshot the run's schedules read: the variable itself
            # may be read before or after the increment.
            fetches = dict(train_graph.fetches, step=step_value())
        for hook in hooks:
            hook.after_create_session(session, None)
        for _ in range(num_epoch):
            epoch, step, start_step = (int(value) for value in session.run(
                [epoch_state.epoch, step_variable, epoch_state.start_step]))
            batches = train_input.start_epoch(session, epoch, batch_size,
                                              step - start_step, step)
            for hook in epoch_hooks:
                hook.begin_epoch(session, epoch, batches)
            record, stopped = _train_epoch(session, fetches, hooks,
                                           batches, epoch, step)
            history.append(record)
            if record["batches"] == batches:
                session.run(epoch_state.end_epoch)
                for hook in epoch_hooks:
                    hook.end_epoch(session, record)
            if stopped:
                break
        for hook in hooks:
            hook.end(session)
    finally:
        for hook in epoch_hooks:
            hook.close()
    return history


def _train_epoch(session, fetches, hooks, batches, epoch, step):
    """Runs up to `batches` steps from global step `step`; returns (the
    epoch's record, whether a hook asked to stop)."""
    images = loss_sum = correct = done = 0
    stopped = False
    start = time.perf_counter()
    while done < batches and not stopped:
        out, stopped = run_step(session, fetches, hooks, step)
        step, done = out["step"], done + 1
        images += out["count"]
        loss_sum += out["loss"] * out["count"]
        correct += out["correct"]
    seconds = time.perf_counter() - start
    return {"epoch": epoch + 1, "step": step, "batches": done,
            "loss": loss_sum / images if images else float("nan"),
            "accuracy": correct / images if images else float("nan"),
            "seconds": seconds,
            "images_per_second": images / seconds if seconds else 0.0}, stopped


class StepContext(tf1.train.SessionRunContext):
    """A `SessionRunContext` that also says the run's `step`: the global
    step it computes with (`step_value()`), so that no hook fetches it."""

    def __init__(self, original_args, session, step):
        super().__init__(original_args, session)
        self.step = step


def run_step(session, fetches, hooks, step):
    """One `session.run` of `fetches` (holding "step": `step_value()`,
    whose value is `step`) with what the hooks add to it, as
    `MonitoredSession` runs it. Returns (fetched values, with "step" the
    global step after the run; whether a hook asked to stop)."""
    context = StepContext(tf1.train.SessionRunArgs(fetches), session, step)
    wanted, feed, options = {}, {}, tf1.RunOptions()
    for index, hook in enumerate(hooks):
        args = hook.before_run(context)
        if args is None:
            continue
        if args.fetches is not None:
            wanted[index] = args.fetches
        for tensor, value in (args.feed_dict or {}).items():
            if tensor in feed:
                raise RuntimeError(f"two hooks feed {tensor}")
            feed[tensor] = value
        if args.options:
            options.trace_level = max(options.trace_level,
                                      args.options.trace_level)
            options.timeout_in_ms = max(options.timeout_in_ms,
                                        args.options.timeout_in_ms)
    traced = options != tf1.RunOptions()
    metadata = tf1.RunMetadata() if traced else None
    results = session.run({"step": fetches, "hooks": wanted},
                          feed_dict=feed or None,
                          options=options if traced else None,
                          run_metadata=metadata)
    for index, hook in enumerate(hooks):
        hook.after_run(context, tf1.train.SessionRunValues(
            results=results["hooks"].get(index), options=options,
            run_metadata=metadata))
    out = results["step"]
    out["step"] = int(out["step"]) + 1
    return out, context.stop_requested


def evaluate(session, inference, batches):
    """{'loss', 'accuracy'} of `inference` (a `graphs.InferenceGraph`) on
    `batches` of (images [n, H, W, C], labels [n]) arrays (e.g.
    `arrays.in_batches(images, labels, EVAL_BATCH_SIZE)`)."""
    loss = correct = count = 0
    for images, labels in batches:
        batch_loss, batch_correct = session.run(
            [inference.loss_sum, inference.correct],
            {inference.images: images, inference.labels: labels})
        loss += batch_loss
        correct += batch_correct
        count += len(labels)
    return {"loss": float(loss / count), "accuracy": float(correct / count)}


def predict(session, inference, images, batch_size=EVAL_BATCH_SIZE):
    """The predicted labels (int64 [N]) of float32 `images` [N, H, W, C]."""
    return np.concatenate([
        session.run(inference.predictions,
                    {inference.images: images[i:i + batch_size]})
        for i in range(0, len(images), batch_size)] or
        [np.zeros([0], np.int64)])


def population_statistics(session, images_placeholder, layers, images,
                          batch_size=EVAL_BATCH_SIZE):
    """Each norm layer's population mean and std over `images` (the whole
    batches of `batch_size` in it): what the moving averages estimate,
    computed exactly ("precise BN", Wu & Johnson 2021).

    `layers` are `NormLayer`s built in training mode on `images_placeholder`
    without microbatches (`graphs.build_inference(..., batch_statistics=
    True)`), so that each batch is normalised by its own, large batch's
    statistics. Per layer, the mean is the batches' mean of means, and
    std**2 = variance + epsilon = the batches' mean of their std**2 plus
    the variance of their means (the law of total variance). Returns a list
    of (mean, std) float32 arrays [C], one per layer.
    """
    fetches = [(layer.batch_mean, layer.batch_std) for layer in layers]
    means = [[] for _ in layers]
    squares = [[] for _ in layers]
    for start in range(0, len(images) - batch_size + 1, batch_size):
        values = session.run(fetches, {
            images_placeholder: images[start:start + batch_size]})
        for index, (mean, std) in enumerate(values):
            means[index].append(mean.astype(np.float64))
            squares[index].append(np.square(std.astype(np.float64)))
    if not means or not means[0]:
        raise ValueError(f"population statistics need at least one batch of "
                         f"{batch_size} images, got {len(images)}")
    return [(np.mean(m, axis=0).astype(np.float32),
             np.sqrt(np.mean(s, axis=0) + np.var(m, axis=0)).astype(np.float32))
            for m, s in zip(means, squares)]
