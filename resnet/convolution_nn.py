"""`ConvolutionNN`: a network, its dataset, one graph and the session that
runs it; a thin composition of the graph builders (`resnet.train.graphs`), the
loop (`resnet.train.loop`), its hooks (`resnet.train.hooks`) and the checkpoints.

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
import contextlib
import dataclasses
import functools
import logging
import sys

from resnet.runtime.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # a Python user's terminal stays as quiet

import tensorflow as tf  # noqa: E402

from batch_renorm import global_step, norm_layers  # noqa: E402
from batch_renorm.schedule import WARMUP_STEPS, average_window  # noqa: E402
from batch_renorm.replicas import (ReplicaGroup, replica_group,  # noqa: E402
                                   set_replica_group)
from resnet.data.arrays import (check_images, check_labels,  # noqa: E402
                                in_batches)
from resnet.data.datasets import Dataset  # noqa: E402
from resnet.data.files import FileDataset  # noqa: E402
from resnet.data.input_pipeline import (Normalizer,  # noqa: E402
                                        batches_per_epoch, check_batches,
                                        check_groups, trim_unit)
from resnet.errors import (PeersNotReady, TrainingInterrupted,  # noqa: E402
                           UsageError)
from resnet.models import NetworkLike  # noqa: E402
from resnet.runtime import cluster as cluster_lib  # noqa: E402
from resnet.runtime.session_config import (  # noqa: E402
    check_device_supports, precision_of,
    session_config as default_session_config)
from resnet.storage.checkpoints import Checkpoints  # noqa: E402
from resnet.storage.export import export_saved_model  # noqa: E402
from resnet.storage.model_dir import DirectoryLock  # noqa: E402
from resnet.train import graphs, loop  # noqa: E402
from resnet.train import hooks as hooks_lib  # noqa: E402
from resnet.train.config import (RunConfig, TrainConfig,  # noqa: E402
                                 check_run_length)

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

STATISTICS = ("moving", "population", "batch")  # evaluate's norm statistics
_EXCLUSIVE_STATISTICS = (
    "sync_statistics (the global batch's moments) and the network's "
    "microbatch (each group's own) exclude each other: choose one")
# Images to evaluate: how many, and `batches(batch_size)` giving them as
# (images, labels) arrays.
Split = collections.namedtuple("Split", "size batches")


class ConvolutionNN:
    """A network, its dataset, one graph and the session that runs it.

    Args:
      network: a `models.NetworkLike`, e.g. `models.resnet(20, 10)`.
      dataset: a `datasets.Dataset`.
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
            raise TypeError(f"network must be a models.NetworkLike (a "
                            f"callable with data_format, microbatch, "
                            f"signature() and renorm_clip()), got {network!r}")
        if not isinstance(dataset, (Dataset, FileDataset)):
            raise TypeError(f"dataset must be a datasets.Dataset (e.g. "
                            f"datasets.load('digits')) or a files."
                            f"FileDataset, got {dataset!r}")
        self.config, self.run_config = _configs(config, run_config, fields)
        if (self.config.classes_per_group or 0) > dataset.num_classes:
            raise UsageError(f"classes_per_group must be at most the "
                             f"dataset's {dataset.num_classes} classes, got "
                             f"{self.config.classes_per_group}")
        run = self.run_config
        if run.sync_statistics and network.microbatch:
            raise UsageError(_EXCLUSIVE_STATISTICS)
        cluster, model_dir = run.cluster, run.model_dir
        if cluster and not cluster.is_chief:
            # The chief saves and reports.
            run = self.run_config = dataclasses.replace(
                run, model_dir=None, progress=False)
            model_dir = None
        check_device_supports(network.data_format)
        self.cluster = cluster
        config = session_config or default_session_config()
        self._precision = precision_of(config)
        server = cluster.start_server(config) if cluster else None
        self.network, self.dataset, self.model_dir = network, dataset, model_dir
        # Label i's name (a folder dataset's class folder), or None.
        self.class_names = dataset.class_names
        self._trained = False  # whether `train` ran: a resume is checked
        self._batch_graphs = {}  # microbatch -> graph, its norm layers
        self._eval_batch = loop.eval_batch_size(dataset.image_shape)
        self.progress = (sys.stderr.isatty() if run.progress is None
                         else run.progress)
        augment = self.config.augment
        if augment is None:  # files: random crops; CIFAR: pad-crop-flip
            augment = (isinstance(dataset, FileDataset)
                       or dataset.image_shape == (32, 32, 3))
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.device(
                cluster.device if cluster else None):
            if cluster:
                set_replica_group(ReplicaGroup(
                    cluster.size, cluster.task_index, run.sync_statistics,
                    cluster.timeout))
            tf1.set_random_seed(self.config.seed)
            self.global_step, self.increment_op = global_step()
            # The input normalisation the model trained with, if recorded:
            # a files dataset that grew would give other statistics.
            recorded = Checkpoints.recorded(model_dir, "normalizer")
            self._preprocess = preprocess = (
                Normalizer.from_dict(recorded) if recorded
                else dataset.normalizer())
            self._input = dataset.train_input(
                self.config.seed, augment, self.config.classes_per_group,
                self.config.group_size,
                (cluster.task_index, cluster.size) if cluster else (0, 1),
                network.microbatch)
            self.train_graph = graphs.build_training(
                network, self._input, self.config, preprocess)
            # Public: its tensors are what a user fetches in inference.
            self.inference = graphs.build_inference(
                network, dataset.image_shape, preprocess)
            classes = self.inference.logits.shape[-1]
            if classes != dataset.num_classes:
                raise ValueError(f"the network has {classes} outputs, the "
                                 f"dataset {dataset.num_classes} classes")
            self._epochs = graphs.build_epoch_state()
            signature = {"network": network.signature(),
                         "dataset": dataset.name,
                         "image_shape": list(dataset.image_shape),
                         "num_classes": int(dataset.num_classes)}
            if self.class_names:  # what a label means, kept with the model
                signature["class_names"] = list(self.class_names)
            signature["normalizer"] = preprocess.as_dict()
            self._checkpoints = (Checkpoints(model_dir, signature)
                                 if model_dir else None)
            init = tf.group(tf1.global_variables_initializer(),
                            tf1.local_variables_initializer())
            broadcast = (replica_group().broadcast_from_chief(
                tf1.global_variables(), cluster.start_timeout)
                if cluster else None)
        # Locked before anything is written there.
        self._lock = DirectoryLock(model_dir) if model_dir else None
        self._writer = (hooks_lib.EventsWriter(model_dir, self.graph)
                        if model_dir else None)
        # Where this object's metrics go out (TensorBoard, with a model_dir).
        self.metrics = hooks_lib.Metrics(self._writer)
        self.session = tf1.Session(
            server.target if server else "", graph=self.graph,
            config=cluster.session_config(config) if cluster else config)
        try:
            self._start(init, broadcast)
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

    def _start(self, init, broadcast):
        """Initialises the variables, restores the newest checkpoint and,
        in a cluster, broadcasts the chief's variables."""
        self.session.run(init)
        self._input.load(self.session)
        if self._checkpoints:
            # A failed restore assigns nothing: the variables stay as
            # initialised.
            if self._checkpoints.restore(self.session):
                # TensorBoard gets later steps only: a run that trains
                # nothing repeats none of the run before.
                self.metrics.start_step = int(
                    self.session.run(self.global_step))
        cluster = self.cluster
        if broadcast is not None:
            with self._lost_workers():
                cluster_lib.run_in_time(
                    lambda: self.session.run(broadcast), cluster.start_timeout,
                    f"worker {cluster.task_index}: no answer from the other "
                    f"workers within {cluster.start_timeout:.0f} s; is every "
                    f"one started, with the same --worker-hosts?",
                    f"the other workers of {', '.join(cluster.workers)}")

    @property
    def epochs_done(self):
        """Epochs completed (an epoch under way does not count)."""
        return int(self.session.run(self._epochs.epoch))

    def train(self, batch_size, num_epoch, hooks=()):
        """Trains `num_epoch` more epochs (finishing first an epoch that is
        under way: it counts as one).

        Args:
          batch_size: the (global) batch.
          num_epoch: epochs to add (0: none).
          hooks: `tf.compat.v1.train.SessionRunHook`s, run after ours.

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
        check_run_length(batch_size, num_epoch)
        for hook in hooks:
            if not all(callable(getattr(hook, name, None)) for name in (
                    "begin", "after_create_session", "before_run",
                    "after_run", "end")):
                raise TypeError(f"hooks must be tf.compat.v1.train."
                                f"SessionRunHooks, got {hook!r}")
        check_batches(batch_size, self.network.microbatch, self._workers(),
                      self.dataset.train_size, self._norm_positions())
        if self.config.classes_per_group:
            check_groups(batch_size, self.config.classes_per_group,
                         self.config.group_size)
        if self._checkpoints:
            self._check_run(batch_size)
        self._warn_if_short(batch_size, num_epoch)
        ours = [hooks_lib.DivergenceHook(self.train_graph.cross_entropy,
                                         self._checkpoints)]
        signals = None
        if self._checkpoints:
            signals = hooks_lib.SignalHook()
            ours += [signals, hooks_lib.CheckpointHook(
                self._checkpoints, hooks_lib.Trigger(
                    every_steps=self.run_config.checkpoint_steps,
                    every_secs=self.run_config.checkpoint_secs))]
        if self._writer:
            ours.append(hooks_lib.SummaryHook(self._writer, self.train_graph.summary))
        ours.append(hooks_lib.ProgressHook(self.train_graph.fetches, self.progress))
        with self._lost_workers(), self._input_errors(ours):
            history = loop.train(self.session, self.train_graph, self._epochs,
                                 self._input, batch_size, num_epoch,
                                 ours + list(hooks))
        if signals and signals.received:
            raise TrainingInterrupted(
                f"stopped by {signals.received.name} at step "
                f"{self.session.run(self.global_step)}; saved checkpoint "
                f"{self._checkpoints.latest}", signals.received)
        return history

    def _workers(self):
        return self.cluster.size if self.cluster else 1

    def _norm_positions(self):
        fewest = getattr(self.network, "fewest_norm_positions", None)
        return fewest(self.dataset.image_shape) if fewest else None

    def _warn_if_short(self, batch_size, num_epoch):
        """One warning each when the run this `train` call makes ends
        before batch renorm's r and d move from 1 and 0 (it would train as
        batch norm), and before step 1 / (1 - momentum), the memory of the
        norms' moving statistics (inference may be off)."""
        norm = getattr(self.network, "norm", None)
        if not num_epoch or norm is None:
            return
        start = int(self.session.run(self._epochs.start_step))
        per_epoch = batches_per_epoch(
            self.dataset.train_size, batch_size,
            trim_unit(self._workers(), self.network.microbatch))
        end = start + num_epoch * per_epoch  # the epoch under way counts
        momentum = getattr(self.network, "norm_momentum", 0.99)
        memory = 1.0 / (1.0 - momentum)
        if end < memory and not self.config.fast_start:
            log.warning(
                "the norms' moving statistics, which evaluate and predict "
                "use, move by the constant 1 - momentum from their initial "
                "0 and 1, and hold %.0f%% of them at step %d: inference "
                "may be off; fast_start=True, a longer run, or "
                "evaluate(statistics='population') does better",
                100 * momentum ** end, end)
        elif end < memory:
            log.warning(
                "the norms' moving statistics, which evaluate and predict "
                "use, average only the last ~%d steps of a run ending at "
                "step %d: "
                "inference may be off; a longer run, or evaluate(statistics="
                "'population') (over the training set), does better",
                max(1, round(average_window(end))), end)
        if norm != "batch_renorm":
            return
        schedule = getattr(self.network, "renorm_schedule", None) or {}
        warmup = schedule.get("warmup_steps", WARMUP_STEPS)
        # The last step reads step end - 1; r and d move after warmup_steps.
        if end - 1 <= warmup:
            log.warning(
                "batch renorm: r = 1 and d = 0 until step %d (the network's "
                "renorm_schedule), and this run ends at step %d, so it "
                "trains as batch norm; for a run of this length give the "
                "network renorm_schedule=config.run_length_defaults(%d)"
                "['network']['renorm_schedule'] (what resnet-run does)",
                warmup, end, end)

    def _check_run(self, batch_size):
        """Refuses to resume checkpoints trained with other arguments
        (unless allow_changes; a later `train` call of this object may
        change its batch size), and a batch size changed mid-epoch always:
        the epoch's position is counted in batches. The arguments: what
        training computes (the batch, `TrainConfig`, the network's settings
        and its model, so that a lost model.json hides no change), how many
        workers normalise their own slices, the training set's size (a
        folder that grew), synchronized statistics, and the precision."""
        step, start = self.session.run([self.global_step,
                                        self._epochs.start_step])
        self._checkpoints.check_run(
            {"batch_size": batch_size, **dataclasses.asdict(self.config),
             "network": self.network.settings(),
             "model": self.network.signature(),
             "workers": self._workers(),
             "train_size": self.dataset.train_size,
             "sync_statistics": bool(self.cluster
                                     and self.run_config.sync_statistics),
             "precision": self._precision},
            self.run_config.allow_changes or self._trained,
            frozen=("batch_size",) if step != start else ())
        self._trained = True

    @contextlib.contextmanager
    def _lost_workers(self):
        """A collective op's failure as one `errors.WorkerLost`."""
        try:
            yield
        except cluster_lib.LOST as error:
            if not self.cluster:
                raise
            raise cluster_lib.worker_lost(error, self.cluster) from None

    @contextlib.contextmanager
    def _input_errors(self, hooks):
        """An image the input cannot decode ends training with a
        DatasetError naming it, after a checkpoint of the steps before
        (`hooks`: ours, the CheckpointHook among them)."""
        try:
            yield
        # TensorFlow raises UnicodeDecodeError for a message holding bytes
        # that are no text (a record's, say).
        except (tf.errors.OpError, UnicodeDecodeError) as error:
            explained = self._input.explain(
                error, lambda: int(self.session.run(self.global_step)))
            if explained is None:
                raise
            saved = [hook.save(self.session) for hook in hooks
                     if isinstance(hook, hooks_lib.CheckpointHook)]
            raise type(explained)(
                f"{explained}" + (
                    f"; saved checkpoint {saved[0]}: replace the file and "
                    f"run again to resume" if saved else "")) from None

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
        if statistics == "batch":
            group = self.network.microbatch or self._eval_batch
            if self.network.microbatch and split.size % group:
                raise UsageError(f"statistics='batch' normalises groups of "
                                 f"{group}: give a multiple of {group} "
                                 f"images, got {split.size}")
            return loop.evaluate(self.session, self._batch_inference(
                self.network), split.batches(
                    self._eval_batch // group * group or group))
        batches = split.batches(self._eval_batch)
        if statistics == "population":
            with self._population_statistics():
                return loop.evaluate(self.session, self.inference, batches)
        metrics = loop.evaluate(self.session, self.inference, batches)
        self.metrics.write(int(self.session.run(self.global_step)), "test",
                           metrics, log_it=False)
        return metrics

    def _batch_inference(self, network):
        """The inference graph of `network` (sharing our variables)
        normalised by batch statistics, without dropout; built once per
        microbatch size."""
        key = network.microbatch
        if key not in self._batch_graphs:
            if not dataclasses.is_dataclass(network):
                raise UsageError("statistics other than 'moving' need a "
                                 "models.Network")
            # In training mode for its norms only: no dropout.
            network = dataclasses.replace(network, layers=tuple(
                dataclasses.replace(layer, dropout_rate=0.0)
                for layer in network.layers))
            with self.graph.as_default():
                built = len(norm_layers())
                graph = graphs.build_inference(
                    network, self.dataset.image_shape, self._preprocess,
                    batch_statistics=True)
                self._batch_graphs[key] = graph, norm_layers()[built:]
        return self._batch_graphs[key][0]

    @contextlib.contextmanager
    def _population_statistics(self):
        """Sets the moving statistics to the training set's population
        statistics, and back on exit."""
        if not isinstance(self.dataset, Dataset):
            raise UsageError("statistics='population' reads the training "
                             "images from memory: a files dataset has "
                             "them on disk (use 'moving')")
        full = (dataclasses.replace(self.network, microbatch=None)
                if self.network.microbatch else self.network)
        graph = self._batch_inference(full)
        layers = self._batch_graphs[None][1]
        if not layers:  # no norms: nothing to recompute
            yield
            return
        values = loop.population_statistics(
            self.session, graph.images, layers, self.dataset.x_train)
        moving = [v for layer in layers
                  for v in (layer.moving_mean, layer.moving_std)]
        saved = self.session.run(moving)

        def load(values):
            with self.graph.as_default():
                for variable, value in zip(moving, values):
                    variable.load(value, self.session)

        load([value for pair in values for value in pair])
        try:
            yield
        finally:
            load(saved)

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
