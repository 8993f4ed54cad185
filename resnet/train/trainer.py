"""The trainer: a built `model.Model` trained in a session with a list of
default hooks the caller may replace or extend, the run checked against
its checkpoints, and what can break a run (an image that does not decode,
a lost worker, a signal) reported as the project's errors.

Typical use (what `ConvolutionNN.train` does):
    trainer = Trainer(session, model, network, dataset, config, run_config,
                      checkpoints, writer, precision="float32")
    history = trainer.train(128, 2, hooks=[my_hook])
    history = trainer.train(128, 1, defaults=trainer.default_hooks()[:-1])

Reference: tensorpack's `Trainer.train` (setup the callbacks, initialize,
the main loop) and its `DEFAULT_CALLBACKS()`.
"""
import contextlib
import dataclasses
import logging

from batch_renorm.tensorflow_quiet import tf

from batch_renorm.schedule import WARMUP_STEPS, average_window
from resnet.data.input_pipeline import batches_per_epoch, trim_unit
from resnet.errors import TrainingInterrupted
from resnet.runtime.cluster import lost_workers
from resnet.train import hooks as hooks_lib
from resnet.train import loop
from resnet.train.validation import check_run

log = logging.getLogger(__name__)

_HOOK_METHODS = ("begin", "after_create_session", "before_run", "after_run",
                 "end")


class Trainer:
    """Trains `model` (built in `session`'s graph) on `dataset`.

    Args:
      session: the `tf.compat.v1.Session` holding the model's variables.
      model: a `model.Model`.
      network, dataset, config, run_config: what the model was built from
        (`models.NetworkLike`, `datasets.DatasetLike`, `TrainConfig`,
        `RunConfig`).
      checkpoints: the model directory's `checkpoints.Checkpoints`, or None.
      writer: a `hooks.EventsWriter` for TensorBoard, or None.
      precision: what the session computes in (recorded with the run).
      progress: the default hooks show a progress bar.
    """

    def __init__(self, session, model, network, dataset, config, run_config,
                 checkpoints=None, writer=None, precision="float32",
                 progress=False):
        self.session, self.model = session, model
        self.progress = progress
        self.network, self.dataset = network, dataset
        self.config, self.run_config = config, run_config
        self.checkpoints, self.writer = checkpoints, writer
        self.precision = precision
        self.cluster = run_config.cluster
        self.workers = self.cluster.size if self.cluster else 1
        self._trained = False  # whether `train` ran: a resume is checked

    def default_hooks(self):
        """The hooks `train` runs unless given others: divergence, and with
        a model directory the signals and checkpoints, TensorBoard's
        summaries, then the progress bar (if `progress`) and log lines."""
        train = self.model.train
        hooks = [hooks_lib.DivergenceHook(train.cross_entropy,
                                          self.checkpoints)]
        if self.checkpoints:
            hooks += [hooks_lib.SignalHook(), hooks_lib.CheckpointHook(
                self.checkpoints, hooks_lib.Trigger(
                    every_steps=self.run_config.checkpoint_steps,
                    every_secs=self.run_config.checkpoint_secs))]
        if self.writer:
            hooks.append(hooks_lib.SummaryHook(self.writer, train.summary))
        hooks.append(hooks_lib.ProgressHook(train.fetches, self.progress))
        return hooks

    def train(self, batch_size, num_epoch, hooks=(), defaults=None):
        """Trains `num_epoch` more epochs (an epoch under way counts as
        one) with `defaults` (None: `default_hooks()`), then `hooks`.

        Returns:
          `loop.train`'s history.

        Raises:
          TypeError: a hook that is not a `SessionRunHook`.
          UsageError (a ValueError): `validation.check_run`'s, or run
            arguments other than the checkpoints were trained with
            (`RunChangedError`, unless allow_changes).
          TrainingInterrupted: a SignalHook heard SIGINT or SIGTERM (a
            CheckpointHook among the hooks saved a checkpoint).
          TrainingDiverged, CheckpointSaveError, DatasetError, WorkerLost:
            training broke off; the checkpoints before are intact.
        """
        defaults = self.default_hooks() if defaults is None else list(defaults)
        hooks = defaults + list(hooks)
        for hook in hooks:
            if not all(callable(getattr(hook, name, None))
                       for name in _HOOK_METHODS):
                raise TypeError(f"hooks must be tf.compat.v1.train."
                                f"SessionRunHooks, got {hook!r}")
        check_run(self.network, self.config, self.dataset, batch_size,
                  num_epoch, self.workers, self.run_config.sync_statistics)
        if self.checkpoints:
            self._check_resume(batch_size)
        if num_epoch:  # the epoch under way counts as one
            start = int(self.session.run(self.model.epochs.start_step))
            per_epoch = batches_per_epoch(
                self.dataset.train_size, batch_size,
                trim_unit(self.workers, self.network.microbatch))
            warn_if_short(self.network, self.config.fast_start,
                          start + num_epoch * per_epoch)
        with lost_workers(self.cluster), self._input_errors(hooks):
            history = loop.train(self.session, self.model.train,
                                 self.model.epochs, self.model.input,
                                 batch_size, num_epoch, hooks)
        received = [hook.received for hook in hooks
                    if isinstance(hook, hooks_lib.SignalHook) and hook.received]
        if received:
            saved = [hook.checkpoints.latest for hook in hooks
                     if isinstance(hook, hooks_lib.CheckpointHook)]
            raise TrainingInterrupted(
                f"stopped by {received[0].name} at step "
                f"{self.session.run(self.model.global_step)}; " + (
                    f"saved checkpoint {saved[0]}" if saved and saved[0]
                    else "no checkpoint saved (no CheckpointHook)"),
                received[0])
        return history

    def _check_resume(self, batch_size):
        """Refuses to resume checkpoints trained with other arguments
        (unless allow_changes; a later `train` call may change its batch
        size), and a batch size changed mid-epoch always: the epoch's
        position is counted in batches. The arguments: what training
        computes (the batch, `TrainConfig`, the network's settings and its
        model, so that a lost model.json hides no change), how many
        workers normalise their own slices, the training set's size (a
        folder that grew), synchronized statistics, and the precision."""
        step, start = self.session.run([self.model.global_step,
                                        self.model.epochs.start_step])
        self.checkpoints.check_run(
            {"batch_size": batch_size, **dataclasses.asdict(self.config),
             "network": self.network.settings(),
             "model": self.network.signature(),
             "workers": self.workers,
             "train_size": self.dataset.train_size,
             "sync_statistics": bool(self.cluster
                                     and self.run_config.sync_statistics),
             "precision": self.precision},
            self.run_config.allow_changes or self._trained,
            frozen=("batch_size",) if step != start else ())
        self._trained = True

    @contextlib.contextmanager
    def _input_errors(self, hooks):
        """An image the input cannot decode ends training with a
        DatasetError naming it, after a checkpoint of the steps before
        (by the CheckpointHook among `hooks`)."""
        try:
            yield
        # TensorFlow raises UnicodeDecodeError for a message holding bytes
        # that are no text (a record's, say).
        except (tf.errors.OpError, UnicodeDecodeError) as error:
            explained = self.model.input.explain(
                error, lambda: int(self.session.run(self.model.global_step)))
            if explained is None:
                raise
            saved = [hook.save(self.session) for hook in hooks
                     if isinstance(hook, hooks_lib.CheckpointHook)]
            raise type(explained)(
                f"{explained}" + (
                    f"; saved checkpoint {saved[0]}: replace the file and "
                    f"run again to resume" if saved else "")) from None


def warn_if_short(network, fast_start, end):
    """One warning each when a run ending at global step `end` ends before
    batch renorm's r and d move from 1 and 0 (it would train as batch
    norm), and before step 1 / (1 - momentum), the memory of the norms'
    moving statistics (inference may be off)."""
    if network.norm is None:
        return
    momentum = network.norm_momentum
    memory = 1.0 / (1.0 - momentum)
    if end < memory and not fast_start:
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
            "step %d: inference may be off; a longer run, or "
            "evaluate(statistics='population') (over the training set), "
            "does better", max(1, round(average_window(end))), end)
    if network.norm != "batch_renorm":
        return
    schedule = network.renorm_schedule or {}
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
