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
import logging
import sys
import time

import numpy as np
import tensorflow as tf

from batch_renorm import global_step, step_value
from resnet import training
from resnet.input_pipeline import TrainInput, per_channel_normalizer

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 500  # images per inference run
SUMMARY_EVERY = 20     # steps between TensorBoard training summaries


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
      model_dir: where TensorBoard summaries go (None: nowhere).
      seed: weight initialisation, data order, augmentation and dropout.
      progress: show a progress bar (default: when stderr is a terminal).
      session_config: a `tf.compat.v1.ConfigProto` for the session.
    """

    def __init__(self, network, dataset, learning_rate=training.LEARNING_RATE,
                 momentum=training.MOMENTUM,
                 weight_decay=training.WEIGHT_DECAY,
                 lr_boundaries=training.LR_BOUNDARIES,
                 lr_decay=training.LR_DECAY, augment=None, model_dir=None,
                 seed=0, progress=None, session_config=None):
        self.network, self.dataset, self.seed = network, dataset, seed
        self.model_dir = model_dir
        self.progress = sys.stderr.isatty() if progress is None else progress
        if augment is None:
            augment = dataset.image_shape == (32, 32, 3)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.global_step, self.increment_op = global_step(self.graph)
            self._build_training(network, dataset, augment, learning_rate,
                                 lr_boundaries, lr_decay, momentum,
                                 weight_decay)
            self._build_inference(network, dataset)
            init = tf.group(tf1.global_variables_initializer(),
                            tf1.local_variables_initializer())
        self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=session_config)
        self.session.run(init)
        self._input.load(self.session)
        with self.graph.as_default():
            self._writer = (tf1.summary.FileWriter(model_dir, self.graph)
                            if model_dir else None)

    def _build_training(self, network, dataset, augment, learning_rate,
                        lr_boundaries, lr_decay, momentum, weight_decay):
        self._normalize = per_channel_normalizer(dataset.x_train)
        self._input = TrainInput(dataset.x_train, dataset.y_train, self.seed,
                                 augment)
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

    def train(self, batch_size, num_epoch):
        """Trains `num_epoch` more epochs (finishing first an epoch that is
        under way). Returns a list with one dict per epoch: epoch, step,
        loss, accuracy (on the training batches), seconds, images_per_second.
        """
        history = []
        for _ in range(num_epoch):
            history.append(self._train_epoch(batch_size))
            log.info("epoch %(epoch)d step %(step)d: loss %(loss).4f, "
                     "accuracy %(accuracy).4f, %(images_per_second).0f img/s",
                     history[-1])
        return history

    def _train_epoch(self, batch_size):
        epoch, step, epoch_start = self.session.run(
            [self._epoch, self.global_step, self._epoch_start])
        batches = self._input.start_epoch(self.session, epoch, batch_size,
                                          step - epoch_start, step)
        images = loss_sum = correct = 0
        start = time.perf_counter()
        with _progress_bar(batches, f"epoch {epoch + 1}",
                           self.progress) as bar:
            for index in range(batches):
                fetches = dict(self._step_fetches)
                if self._writer and (step + index) % SUMMARY_EVERY == 0:
                    fetches["summary"] = self._summary
                out = self.session.run(fetches)
                images += out["count"]
                loss_sum += out["loss"] * out["count"]
                correct += out["correct"]
                if "summary" in out:
                    self._writer.add_summary(out["summary"], step + index)
                bar.update(1)
                bar.set_postfix(loss=f"{out['loss']:.3f}",
                                img_s=f"{images / (time.perf_counter() - start):.0f}",
                                refresh=False)
        seconds = time.perf_counter() - start
        self.session.run(self._end_epoch)
        return {"epoch": int(epoch) + 1, "step": int(step) + batches,
                "loss": loss_sum / images, "accuracy": correct / images,
                "seconds": seconds, "images_per_second": images / seconds}

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


def _progress_bar(total, description, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, disable=not enabled,
                unit="step", leave=False)
