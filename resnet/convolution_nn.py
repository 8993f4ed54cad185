"""`ConvolutionNN`: builds the training and inference graph of a network on a
dataset and runs it in a `tf.compat.v1.Session`.

Typical use:
    from resnet import datasets, models
    from resnet.convolution_nn import ConvolutionNN

    ds = datasets.load("digits")
    cnn = ConvolutionNN(models.resnet(20, ds.num_classes, norm="batch_renorm"),
                        ds, learning_rate=0.1, seed=0)
    history = cnn.train(batch_size=128, num_epoch=2)
    print(cnn.evaluate())                      # {'loss': ..., 'accuracy': ...}
"""
import dataclasses
import logging
import numbers
import sys
import time

import numpy as np
import tensorflow as tf

from batch_renorm import global_step, step_value
from resnet import training
from resnet.checkpoints import Checkpoints, check_model_dir
from resnet.input_pipeline import TrainInput, per_channel_normalizer
from resnet.session_config import check_device_supports
from resnet.session_config import session_config as default_session_config
from resnet.signals import StopOnSignal

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 500   # images per inference run
SUMMARY_EVERY = 20      # steps between TensorBoard training summaries
CHECKPOINT_SECS = 300   # seconds of training between checkpoints


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a step, and a checkpoint of
    that step was saved. `exit_code` is 128 + the signal's number."""

    def __init__(self, message, signal):
        super().__init__(message)
        self.signal = signal
        self.exit_code = 128 + int(signal)


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) stopped being finite; nothing was saved."""


class ConvolutionNN:
    """A network, its dataset, one graph and the session that runs it.

    Args:
      network: a callable `network(images, training) -> logits`, e.g.
        `models.resnet(20, 10)`; it is called twice (training, inference)
        and must share its variables between the calls.
      dataset: a `datasets.Dataset`.
      learning_rate, lr_boundaries, lr_decay: the step schedule,
        `training.step_learning_rate`; boundaries are global steps.
      momentum: SGD momentum. weight_decay: L2 on the kernels.
      augment: pad-crop-flip the training images (default: for 32x32 RGB).
      model_dir: where checkpoints and TensorBoard summaries go (None:
        nowhere). The newest checkpoint there is restored on construction.
      seed: weight initialisation, data order, augmentation and dropout.
      progress: show a progress bar (default: when stderr is a terminal).
      session_config: a `tf.compat.v1.ConfigProto` for the session (default:
        `session_config.session_config()`: threads for this machine, and
        bfloat16 mixed precision where the CPU computes it natively). For
        small steps (ResNet-20 below batch 32), `session_config(batch_size=
        ..., image_shape=...)` picks faster threads, as resnet-run does.
      classes_per_batch: build each training batch from this many classes
        only (non-i.i.d. batches; `input_pipeline.non_iid_order`).
      checkpoint_secs, checkpoint_steps: with a model_dir, save a checkpoint
        after every so many seconds or steps of training (and at each
        epoch's end). A run resumed from any checkpoint ends with the
        weights of the uninterrupted run.

    During `train`, with a model_dir, SIGINT and SIGTERM stop training after
    the current step and save a checkpoint (`TrainingInterrupted`); a second
    one stops the process at once. A non-finite loss stops training
    (`TrainingDiverged`) without writing over the last checkpoint.
    """

    def __init__(self, network, dataset, learning_rate=training.LEARNING_RATE,
                 momentum=training.MOMENTUM,
                 weight_decay=training.WEIGHT_DECAY,
                 lr_boundaries=training.LR_BOUNDARIES,
                 lr_decay=training.LR_DECAY, augment=None, model_dir=None,
                 seed=0, progress=None, session_config=None,
                 checkpoint_secs=CHECKPOINT_SECS, checkpoint_steps=None,
                 classes_per_batch=None):
        training.check_optimizer_arguments(learning_rate, momentum,
                                           weight_decay, lr_boundaries,
                                           lr_decay)
        check_model_dir(model_dir)
        check_device_supports(getattr(network, "data_format", "NHWC"))
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if classes_per_batch is not None and not (
                isinstance(classes_per_batch, numbers.Integral)
                and 1 <= classes_per_batch <= dataset.num_classes):
            raise ValueError(f"classes_per_batch must be an integer in [1, "
                             f"{dataset.num_classes}] or None, got "
                             f"{classes_per_batch!r}")
        if checkpoint_steps is not None and (
                not isinstance(checkpoint_steps, numbers.Integral)
                or checkpoint_steps < 1):
            raise ValueError(f"checkpoint_steps must be an integer >= 1 or "
                             f"None, got {checkpoint_steps!r}")
        self.network, self.dataset, self.seed = network, dataset, seed
        self.model_dir = model_dir
        self._classes_per_batch = classes_per_batch
        self.checkpoint_secs, self.checkpoint_steps = (checkpoint_secs,
                                                       checkpoint_steps)
        self.progress = sys.stderr.isatty() if progress is None else progress
        if augment is None:
            augment = dataset.image_shape == (32, 32, 3)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.global_step, self.increment_op = global_step(self.graph)
            self._build_training(network, dataset, augment, learning_rate,
                                 lr_boundaries, lr_decay, momentum,
                                 weight_decay, classes_per_batch)
            self._build_inference(network, dataset)
            self._all_finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(v))
                 for v in tf1.trainable_variables()])
            self._checkpoints = (Checkpoints(model_dir,
                                             _signature(network, dataset))
                                 if model_dir else None)
            self._init = tf.group(tf1.global_variables_initializer(),
                                  tf1.local_variables_initializer())
            self._writer = (tf1.summary.FileWriter(model_dir, self.graph)
                            if model_dir else None)
        self.graph.finalize()
        self.session = tf1.Session(
            graph=self.graph, config=session_config or default_session_config())
        self.session.run(self._init)
        self._input.load(self.session)
        if self._checkpoints:
            # A failed restore assigns nothing: the variables stay as
            # initialised.
            self._checkpoints.restore(self.session)
            log.info("model_dir %s: step %d, %d epochs done", model_dir,
                     self.session.run(self.global_step), self.epochs_done)

    def _build_training(self, network, dataset, augment, learning_rate,
                        lr_boundaries, lr_decay, momentum, weight_decay,
                        classes_per_batch):
        self._normalize = per_channel_normalizer(dataset.x_train)
        self._input = TrainInput(dataset.x_train, dataset.y_train, self.seed,
                                 augment, classes_per_batch)
        logits = network(self._normalize(self._input.images), training=True)
        loss, cross_entropy = training.classification_loss(
            logits, self._input.labels, weight_decay)
        self.learning_rate = training.step_learning_rate(
            step_value(), learning_rate, lr_boundaries, lr_decay)
        self._train_op = training.train_op(loss, self.learning_rate, momentum,
                                           self.increment_op)
        correct = tf.reduce_sum(tf.cast(tf.equal(
            tf.argmax(logits, axis=1), self._input.labels), tf.int64))
        self._step_fetches = {"train": self._train_op, "loss": cross_entropy,
                              "correct": correct,
                              "count": tf.size(self._input.labels)}
        with tf1.name_scope("train_state"):
            # The epoch under way and the step it started at: with the
            # global step, where in the data the next batch comes from.
            self._epoch = tf1.Variable(0, dtype=tf.int64, trainable=False,
                                       name="epoch")
            self._epoch_start = tf1.Variable(0, dtype=tf.int64,
                                             trainable=False,
                                             name="epoch_start_step")
            self._end_epoch = tf.group(
                self._epoch.assign_add(1),
                self._epoch_start.assign(self.global_step))
        scalars = {"train/loss": cross_entropy,
                   "train/accuracy": tf.cast(correct, tf.float32)
                   / tf.cast(tf.size(self._input.labels), tf.float32),
                   "train/learning_rate": self.learning_rate}
        if getattr(network, "norm", None) == "batch_renorm":
            rmax, dmax = network.renorm_clip()
            scalars.update({"renorm/rmax": rmax, "renorm/dmax": dmax})
        self._summary = tf1.summary.merge(
            [tf1.summary.scalar(name, value) for name, value in scalars.items()])

    def _build_inference(self, network, dataset):
        self._images = tf1.placeholder(tf.float32, [None, *dataset.image_shape],
                                       name="images")
        self._labels = tf1.placeholder(tf.int64, [None], name="labels")
        logits = network(self._normalize(self._images), training=False)
        self._predictions = tf.argmax(logits, axis=1, name="predictions")
        self._eval_fetches = {
            "loss": tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=self._labels, logits=logits)),
            "correct": tf.reduce_sum(tf.cast(
                tf.equal(self._predictions, self._labels), tf.int64))}

    @property
    def epochs_done(self):
        """Epochs completed (an epoch under way does not count)."""
        return int(self.session.run(self._epoch))

    def train(self, batch_size, num_epoch):
        """Trains `num_epoch` more epochs (finishing first an epoch that is
        under way). Returns a list with one dict per epoch: epoch, step,
        loss, accuracy (on the training batches), seconds, images_per_second.
        """
        training.check_run_arguments(batch_size, num_epoch)
        self._check_batches(batch_size)
        history = []
        self._last_save = time.monotonic()
        with StopOnSignal() if self._checkpoints else _NoSignals() as stop:
            for _ in range(num_epoch):
                history.append(self._train_epoch(batch_size, stop))
                self.session.run(self._end_epoch)
                self._save()
                log.info("epoch %(epoch)d step %(step)d: loss %(loss).4f, "
                         "accuracy %(accuracy).4f, "
                         "%(images_per_second).0f img/s", history[-1])
        if self._writer:
            self._writer.flush()
        return history

    def _check_batches(self, batch_size):
        """Microbatches and non-i.i.d. batches must divide every batch."""
        group = getattr(self.network, "norm_group_size", None)
        last = len(self.dataset.x_train) % batch_size or batch_size
        if group and (batch_size % group or last % group):
            raise ValueError(
                f"with microbatches of {group}, batch_size ({batch_size}) and "
                f"the epoch's last batch ({last}) must be multiples of {group}")
        if self._classes_per_batch and batch_size % self._classes_per_batch:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of "
                f"classes_per_batch ({self._classes_per_batch})")

    def _train_epoch(self, batch_size, stop):
        epoch, step, epoch_start = self.session.run(
            [self._epoch, self.global_step, self._epoch_start])
        batches = self._input.start_epoch(self.session, epoch, batch_size,
                                          step - epoch_start, step)
        images = loss_sum = correct = 0
        start = time.perf_counter()
        with _progress_bar(batches, f"epoch {epoch + 1}",
                           self.progress) as bar:
            for _ in range(batches):
                fetches = dict(self._step_fetches)
                if self._writer and step % SUMMARY_EVERY == 0:
                    fetches["summary"] = self._summary
                out = self.session.run(fetches)
                if not np.isfinite(out["loss"]):
                    raise TrainingDiverged(
                        f"training diverged: the loss is {out['loss']} at "
                        f"step {step + 1}; the last good checkpoint is "
                        f"{self._last_checkpoint()}")
                if "summary" in out:
                    self._writer.add_summary(out["summary"], step)
                step += 1
                images += out["count"]
                loss_sum += out["loss"] * out["count"]
                correct += out["correct"]
                bar.update(1)
                bar.set_postfix(loss=f"{out['loss']:.3f}",
                                img_s=f"{images / (time.perf_counter() - start):.0f}",
                                refresh=False)
                if stop.received:
                    self._stop(stop.received)
                if self._checkpoint_due(step):
                    self._save()
        seconds = time.perf_counter() - start
        return {"epoch": int(epoch) + 1, "step": int(step),
                "loss": loss_sum / images if images else float("nan"),
                "accuracy": correct / images if images else float("nan"),
                "seconds": seconds,
                "images_per_second": images / seconds if seconds else 0.0}

    def _checkpoint_due(self, step):
        if not self._checkpoints:
            return False
        if self.checkpoint_steps and step % self.checkpoint_steps == 0:
            return True
        return time.monotonic() - self._last_save >= self.checkpoint_secs

    def _save(self):
        """Saves a checkpoint, never of a diverged state."""
        if not self._checkpoints:
            return None
        step = self.session.run(self.global_step)
        if not self.session.run(self._all_finite):
            raise TrainingDiverged(
                f"training diverged: a weight is not finite at step {step}; "
                f"the last good checkpoint is {self._last_checkpoint()}")
        self._last_save = time.monotonic()
        return self._checkpoints.save(self.session, step)

    def _last_checkpoint(self):
        latest = self._checkpoints and self._checkpoints.latest
        return latest or "none" + ("" if self._checkpoints else " (no model_dir)")

    def _stop(self, signal):
        path = self._save()
        raise TrainingInterrupted(
            f"stopped by {signal.name} at step "
            f"{self.session.run(self.global_step)}; saved checkpoint {path}",
            signal)

    def evaluate(self, images=None, labels=None):
        """{'loss', 'accuracy'} with the moving statistics (inference mode),
        on the test split unless images and labels are given."""
        if images is None:
            images, labels = self.dataset.x_test, self.dataset.y_test
        totals = {"loss": 0.0, "correct": 0}
        for start in range(0, len(images), EVAL_BATCH_SIZE):
            out = self.session.run(self._eval_fetches, {
                self._images: images[start:start + EVAL_BATCH_SIZE],
                self._labels: labels[start:start + EVAL_BATCH_SIZE]})
            totals = {k: totals[k] + out[k] for k in totals}
        metrics = {"loss": totals["loss"] / len(images),
                   "accuracy": totals["correct"] / len(images)}
        if self._writer:
            step = self.session.run(self.global_step)
            self._writer.add_summary(tf1.Summary(value=[
                tf1.Summary.Value(tag=f"test/{name}", simple_value=value)
                for name, value in metrics.items()]), step)
            self._writer.flush()
        return metrics

    def predict(self, images):
        """The predicted labels (int64 [N]) of NHWC float32 images [N, H, W, C]."""
        images = np.asarray(images, dtype=np.float32)
        if images.shape[1:] != self.dataset.image_shape:
            raise ValueError(f"images must have shape [N, "
                             f"{', '.join(map(str, self.dataset.image_shape))}]"
                             f", got {list(images.shape)}")
        return np.concatenate([
            self.session.run(self._predictions,
                             {self._images: images[i:i + EVAL_BATCH_SIZE]})
            for i in range(0, len(images), EVAL_BATCH_SIZE)] or
            [np.zeros([0], np.int64)])

    def close(self):
        if self._writer:
            self._writer.close()
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _NoSignals:
    received = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def _signature(network, dataset):
    """What checkpoints of this model must agree on: the architecture and
    the data (not training hyperparameters such as the renorm schedule, nor
    the layout the layers compute in)."""
    if dataclasses.is_dataclass(network):
        architecture = dataclasses.asdict(network)
        for key in ("renorm_schedule", "norm_momentum", "norm_group_size",
                    "data_format"):
            architecture.pop(key, None)
    else:
        architecture = getattr(network, "__qualname__", type(network).__name__)
    return {"network": architecture, "dataset": dataset.name,
            "image_shape": list(dataset.image_shape),
            "num_classes": int(dataset.num_classes)}


def _progress_bar(total, description, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, disable=not enabled,
                unit="step", leave=False)
