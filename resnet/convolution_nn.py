"""`ConvolutionNN`: a network, its dataset, one graph and the session that
runs it. A facade: the graphs come from `resnet.train.model`, training from
`resnet.train.trainer`, the statistics diagnostics from
`resnet.train.diagnostics`, the checks from `resnet.train.validation`.

Typical use:
    from resnet import models
    from resnet.data import datasets
    from resnet.convolution_nn import ConvolutionNN

    ds = datasets.load("digits")
    cnn = ConvolutionNN(models.resnet(20, ds.num_classes, norm="batch_renorm"),
                        ds, learning_rate=0.1, seed=0)
    history = cnn.train(batch_size=128, num_epoch=2)
    print(cnn.evaluate())                      # {'loss': ..., 'accuracy': ...}
"""
import collections
import dataclasses
import functools
import logging
import sys

from batch_renorm.tensorflow_quiet import tf

from resnet.data.arrays import check_images, check_labels, in_batches
from resnet.data.datasets import DatasetLike
from resnet.data.input_pipeline import Normalizer
from resnet.errors import PeersNotReady
from resnet.models import NetworkLike
from resnet.runtime import cluster as cluster_lib
from resnet.runtime.session_config import (
    precision_of, session_config as default_session_config, use_threads)
from resnet.storage.checkpoints import Checkpoints
from resnet.storage.export import export_saved_model
from resnet.storage.model_dir import DirectoryLock
from resnet.train import loop, model as model_lib
from resnet.train import hooks as hooks_lib
from resnet.train.config import RunConfig, TrainConfig
from resnet.train.diagnostics import Diagnostics
from resnet.train.trainer import Trainer
from resnet.train.validation import check_run

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

STATISTICS = ("moving", "population", "batch")  # evaluate's norm statistics
# Images to evaluate: how many, and `batches(batch_size)` giving them as
# (images, labels) arrays.
Split = collections.namedtuple("Split", "size batches")


class ConvolutionNN:
    """A network, its dataset, one graph and the session that runs it.

    Args:
      network: a `models.NetworkLike`, e.g. `models.resnet(20, 10)`.
      dataset: a `datasets.DatasetLike`: a `datasets.Dataset` (in memory)
        or a `files.FileDataset`.
      config: a `config.TrainConfig`: what training computes. Its defaults
        are the paper's, in steps (lr 0.1 divided at 32k and 48k steps,
        batch renorm's ramp from step 5,000): for a short run, give the
        network and config `config.run_length_defaults(total_steps)`, as
        resnet-run does; `train` warns when batch renorm's ramp cannot open
        within the run it makes, and when the run is shorter than the
        moving statistics' memory (1 / (1 - norm_momentum) steps).
      run_config: a `config.RunConfig`: how the run goes. Its fields:
        model_dir: where checkpoints and TensorBoard summaries go (None:
          nowhere). The newest checkpoint there is restored on construction.
        progress: show a progress bar (default: when stderr is a terminal).
        checkpoint_secs, checkpoint_steps: with a model_dir, save a
          checkpoint after every so many seconds or steps of training (and
          at each epoch's end). A run resumed from any checkpoint ends with
          the weights of the uninterrupted run.
        cluster: a `cluster.Cluster` to train data-parallel on, this
          process being one of its tasks (every task makes the same
          ConvolutionNN). `batch_size` is the global batch; each worker
          takes its slice, the gradients are averaged, the chief (task 0)
          saves and restores, and its variables are broadcast to every
          worker at the start.
        sync_statistics: with a cluster, the norms use the moments of the
          whole global batch (else each worker's own slice's, the paper's
          setting).
        allow_changes: let `train` resume checkpoints trained with other
          arguments (batch size, learning rate, seed, renorm schedule,
          ...); without it that is refused with `errors.RunChangedError`.
      session_config: a `tf.compat.v1.ConfigProto` (default:
        `session_config.session_config()`; `session_config(batch_size=...,
        image_shape=...)` sizes the threads to the step, as resnet-run does).
      **fields: fields of TrainConfig (learning_rate=..., seed=...) or of
        RunConfig (model_dir=..., ...), replacing the configs' own.

    Raises:
      TypeError: a network, dataset or config of the wrong type.
      ValueError (`errors.UsageError`): a value no run can use.

    A model_dir is locked for the object's life (`close` frees it): another
    run on it raises `errors.ModelDirInUseError`.

    During `train`, with a model_dir, SIGINT and SIGTERM stop training after
    the current step and save a checkpoint (`TrainingInterrupted`); a second
    one stops the process at once. A non-finite loss stops training
    (`TrainingDiverged`) without writing over the last checkpoint.
    """

    def __init__(self, network, dataset, config=None, run_config=None, *,
                 session_config=None, **fields):
        if not isinstance(network, NetworkLike):
            members = {*NetworkLike.__annotations__, "__call__",
                       *(n for n in dir(NetworkLike) if n[0] != "_")}
            missing = [name for name in members
                       if not hasattr(network, name)]
            raise TypeError(f"network must be a models.NetworkLike, e.g. "
                            f"models.resnet(20, 10); {network!r} lacks "
                            f"{', '.join(sorted(missing))}")
        if not isinstance(dataset, DatasetLike):
            raise TypeError(f"dataset must be a datasets.DatasetLike (e.g. "
                            f"datasets.load('digits'), files.load(...)), "
                            f"got {dataset!r}")
        config, run = _configs(config, run_config, fields)
        cluster = run.cluster
        check_run(network, config, dataset, workers=cluster.size if cluster
                  else 1, sync_statistics=run.sync_statistics)
        if cluster and not cluster.is_chief:  # the chief saves and reports
            run = dataclasses.replace(run, model_dir=None, progress=False)
        self.config, self.run_config, self.cluster = config, run, cluster
        self.network, self.dataset = network, dataset
        self.model_dir = model_dir = run.model_dir
        # Label i's name (a folder dataset's class folder), or None.
        self.class_names = dataset.class_names
        proto = session_config or default_session_config()
        use_threads(proto)  # before the graph: its input pipeline fixes them
        # The input normalisation the model trained with, if recorded: a
        # files dataset that grew would give other statistics.
        recorded = Checkpoints.recorded(model_dir, "normalizer")
        self._preprocess = (Normalizer.from_dict(recorded) if recorded
                            else dataset.normalizer())
        self.model = model = model_lib.build_model(
            network, dataset, config, self._preprocess, cluster,
            run.sync_statistics)
        self.graph, self.global_step = model.graph, model.global_step
        self.increment_op, self.train_graph = model.increment_op, model.train
        self.inference = model.inference  # what a user fetches to infer
        checkpoints = None
        if model_dir:
            with self.graph.as_default():
                checkpoints = Checkpoints(model_dir, model_lib.signature(
                    network, dataset, self._preprocess))
        # Locked before anything is written there.
        self._lock = DirectoryLock(model_dir) if model_dir else None
        self._writer = (hooks_lib.EventsWriter(model_dir, self.graph)
                        if model_dir else None)
        # Where this object's metrics go out (TensorBoard, with a model_dir).
        self.metrics = hooks_lib.Metrics(self._writer)
        self._eval_batch = loop.eval_batch_size(dataset.image_shape)
        self.session = None
        try:  # from here on a failure frees what was taken
            server = cluster.start_server(proto) if cluster else None
            self.session = tf1.Session(
                server.target if server else "", graph=self.graph,
                config=cluster.session_config(proto) if cluster else proto)
            self._trainer = Trainer(
                self.session, model, network, dataset, config, run,
                checkpoints, self._writer, precision_of(proto),
                sys.stderr.isatty() if run.progress is None else run.progress)
            self._diagnostics = Diagnostics(
                self.session, network, dataset, self._preprocess,
                self.inference, self._eval_batch)
            self._start(checkpoints)
        except PeersNotReady:
            # A thread still waits inside the session: closing it would
            # wait too. The process is to end; the lock goes first.
            if self._lock:
                self._lock.release()
            raise
        except BaseException:
            self.close()
            raise
        if model_dir:
            log.info("model_dir %s: step %d, %d epochs done", model_dir,
                     self.session.run(self.global_step), self.epochs_done)

    def _start(self, checkpoints):
        """Initialises the variables, restores the newest checkpoint (a
        failed restore assigns nothing) and, in a cluster, broadcasts the
        chief's variables."""
        self.session.run(self.model.init)
        self.model.input.load(self.session)
        if checkpoints and checkpoints.restore(self.session):
            # TensorBoard gets later steps only: a run that trains nothing
            # repeats none of the run before.
            self.metrics.start_step = int(self.session.run(self.global_step))
        cluster = self.cluster
        if cluster:
            with cluster_lib.lost_workers(cluster):
                cluster_lib.run_in_time(
                    lambda: self.session.run(self.model.broadcast),
                    cluster.start_timeout,
                    f"worker {cluster.task_index}: no answer from the other "
                    f"workers within {cluster.start_timeout:.0f} s; is every "
                    f"one started, with the same --worker-hosts?",
                    f"the other workers of {', '.join(cluster.workers)}")

    @property
    def epochs_done(self):
        """Epochs completed (an epoch under way does not count)."""
        return int(self.session.run(self.model.epochs.epoch))

    @property
    def progress(self):
        """Whether `train`'s default hooks show a progress bar."""
        return self._trainer.progress

    @progress.setter
    def progress(self, value):
        self._trainer.progress = bool(value)

    def default_hooks(self):
        """The hooks `train` runs before the caller's, unless given others
        (`trainer.Trainer.default_hooks`): a list to copy and change."""
        return self._trainer.default_hooks()

    def train(self, batch_size, num_epoch, hooks=(), defaults=None):
        """Trains `num_epoch` more epochs (finishing first an epoch that is
        under way: it counts as one).

        Args:
          batch_size: the (global) batch.
          num_epoch: epochs to add (0: none).
          hooks: `tf.compat.v1.train.SessionRunHook`s, run after the
            defaults.
          defaults: the hooks to run first (None: `default_hooks()`: the
            checkpoints, signals, divergence, summaries and progress).

        Returns:
          `loop.train`'s history: a dict per epoch (epoch, step, loss,
          accuracy, seconds, images_per_second, and what hooks add).

        Raises:
          UsageError (a ValueError): a batch the data, the microbatches,
            the groups or the workers cannot split, or run arguments other
            than the model directory's checkpoints were trained with
            (`RunChangedError` then, unless allow_changes).
          TrainingInterrupted: SIGINT or SIGTERM (a checkpoint was saved).
          TrainingDiverged, CheckpointSaveError, WorkerLost: training broke
            off; the checkpoints before are intact.
        """
        return self._trainer.train(batch_size, num_epoch, hooks, defaults)

    def evaluation_hook(self, every_steps=None, every_epochs=None,
                        images=None, labels=None, name="test",
                        every_secs=None):
        """A `hooks.EvaluationHook` that evaluates like `evaluate`, on the
        test split unless images and labels are given (a held-out split),
        when a `hooks.Trigger` of the `every_*` arguments says."""
        trigger = hooks_lib.Trigger(every_steps, every_secs, every_epochs)
        split = self._split(images, labels)
        return hooks_lib.EvaluationHook(
            lambda session: loop.evaluate(session, self.inference,
                                          split.batches(self._eval_batch)),
            trigger, self.metrics, name)

    def evaluate(self, images=None, labels=None, statistics="moving"):
        """Loss and accuracy of the network on images and labels.

        Args:
          images, labels: [N, H, W, C] and [N] (as `predict` takes them);
            None for the test split.
          statistics: what the norms normalise with:
            "moving": their moving averages (inference mode, as `predict`);
            "population": each layer's mean and std recomputed over the
              training set (`loop.population_statistics`), for this call;
            "batch": each fed group's own, as in training: the network's
              microbatches, else batches of 500 (order the images in
              groups).

        Returns:
          {"loss": mean cross-entropy, "accuracy": fraction right}.

        Raises:
          ValueError, TypeError: bad arrays, or an unknown `statistics`.
        """
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got "
                             f"{statistics!r}")
        if statistics != "moving" and self.cluster:
            raise ValueError(f"statistics={statistics!r} is for one process "
                             f"(evaluate a restored model outside the "
                             f"cluster)")
        split = self._split(images, labels)
        if statistics != "moving":
            return self._diagnostics.evaluate(statistics, split)
        metrics = loop.evaluate(self.session, self.inference,
                                split.batches(self._eval_batch))
        self.metrics.write(int(self.session.run(self.global_step)), "test",
                           metrics, log_it=False)
        return metrics

    def _split(self, images, labels):
        """What to evaluate: the test split, or the checked arrays
        (`resnet.data.arrays`), as a `Split`."""
        if images is None:
            if labels is not None:
                raise ValueError("labels without images: give both, or "
                                 "neither for the test split")
            return Split(self.dataset.test_size, self.dataset.test_batches)
        images = check_images(images, self.dataset.image_shape)
        if len(images) == 0:
            raise ValueError("images is empty: nothing to evaluate")
        labels = check_labels(labels, len(images), self.dataset.num_classes)
        return Split(len(images), functools.partial(in_batches, images,
                                                    labels))

    def predict(self, images):
        """The predicted labels, int64 [N], of `images` [N, H, W, C]: floats
        in [0, 1] (the datasets' scale) or uint8 in 0-255, with the moving
        statistics.

        Raises:
          ValueError, TypeError: images of another shape, dtype or scale,
            or not finite (`data.arrays.check_images`).
        """
        return loop.predict(self.session, self.inference,
                            check_images(images, self.dataset.image_shape),
                            self._eval_batch)

    def export(self, path):
        """Writes the inference graph with the current weights as a
        SavedModel to `path` (a symbolic link's target; see
        `resnet.storage.export`); returns where it went. Raises ValueError
        for a path no export may take, ExportError when writing fails (an
        earlier export there is intact)."""
        variables = self.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
        values = dict(zip([v.op.name for v in variables],
                          self.session.run(variables)))
        return export_saved_model(self.network, self.dataset.image_shape,
                                  self._preprocess, values, path,
                                  self.class_names)

    def close(self):
        """Frees the session and the model directory's lock."""
        if self._writer:
            self._writer.close()
        if self.session is not None:
            self.session.close()
        if self._lock:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _configs(config, run_config, fields):
    """(TrainConfig, RunConfig) from the given ones (default: defaults)
    with `fields` replaced, each field going to the config that has it."""
    for name, value, kind in (("config", config, TrainConfig),
                              ("run_config", run_config, RunConfig)):
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}, got "
                            f"{value!r}")
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    run_names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(fields) - train_names - run_names)
    if unknown:
        renamed = (" (classes_per_batch is now classes_per_group, its "
                   "group_size None: the whole batch)"
                   if "classes_per_batch" in unknown else "")
        raise TypeError(f"unknown argument(s) {', '.join(unknown)}: fields "
                        f"of TrainConfig or RunConfig are accepted{renamed}")
    return (dataclasses.replace(config or TrainConfig(), **{
                k: v for k, v in fields.items() if k in train_names}),
            dataclasses.replace(run_config or RunConfig(), **{
                k: v for k, v in fields.items() if k in run_names}))
