"""The training loop's side jobs, as TensorFlow 1 `SessionRunHook`s.

`loop.train` calls each hook through `tf.compat.v1.train.SessionRunHook`'s
interface: `begin` (the graph is the default graph and may still grow),
`after_create_session`, `before_run` (returning `SessionRunArgs`: what to
fetch along with the step), `after_run`, and `end` once training has ended
normally or a hook asked it to stop (`run_context.request_stop()`); not
after an exception. The loop's `run_context` also has `step`: the global
step the run computes with (`batch_renorm.step_value()`; the global step is
`step + 1` after it); the hooks here read it, so they run in `loop.train`
(not in a `MonitoredSession`). They also hear of epochs (`EpochHook`).

A hook of your own is a plain `SessionRunHook`, e.g. one that logs the mean
r of the first batch renorm layer every 100 steps:

    class LogR(tf.compat.v1.train.SessionRunHook):
        def begin(self):
            self.r = batch_renorm.norm_layers()[0].r
        def before_run(self, run_context):
            return tf.compat.v1.train.SessionRunArgs(self.r)
        def after_run(self, run_context, run_values):
            if run_context.step % 100 == 0:
                print(run_context.step, run_values.results.mean())

    cnn.train(batch_size=128, num_epoch=2, hooks=[LogR()])

Reference: TensorFlow 1's `CheckpointSaverHook`, `NanTensorHook`,
`SummarySaverHook`; tensorpack's `Callback`s.
"""
import glob
import logging
import os
import time

import numpy as np
from batch_renorm.tensorflow_quiet import tf

from resnet.checks import check_int, check_number
from resnet.errors import TrainingDiverged, UsageError
from resnet.train.signals import StopOnSignal

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

SUMMARY_EVERY = 20  # steps between TensorBoard training summaries


class Trigger:
    """When a periodic job runs: every `every_steps` global steps, every
    `every_secs` seconds of training and/or every `every_epochs` epochs
    (tensorpack's `PeriodicTrigger`). A hook says what it does; its trigger
    says when.

    Raises:
      UsageError (a ValueError): no period, or one no run can use.
    """

    def __init__(self, every_steps=None, every_secs=None, every_epochs=None):
        check_int("every_steps", every_steps, optional=True)
        check_int("every_epochs", every_epochs, optional=True)
        if every_secs is not None:
            check_number("every_secs", every_secs, low=0.0, low_open=True,
                         infinite=True)
        if every_steps is None and every_secs is None and every_epochs is None:
            raise UsageError("give every_steps, every_secs, every_epochs or "
                             "a combination")
        self.every_steps, self.every_secs = every_steps, every_secs
        self.every_epochs = every_epochs
        self._fired = None  # the step the job last ran at
        self.restart()

    def restart(self):
        """The time period counts from now (a hook's `begin` calls it)."""
        self._last = time.monotonic()

    def due(self, step):
        """Whether the period says the job is due at step `step`."""
        return bool((self.every_steps and step % self.every_steps == 0) or
                    (self.every_secs is not None and
                     time.monotonic() - self._last >= self.every_secs))

    def fires(self, step, forced=False):
        """Whether the job runs at step `step`: when it is due (or
        `forced`, e.g. at an epoch's end), and never twice at one step. A
        firing restarts the time period. A trigger belongs to one hook: it
        remembers where that hook's job last ran."""
        if not (forced or self.due(step)) or step == self._fired:
            return False
        self._fired = step
        self.restart()
        return True

    def due_epoch(self, epoch):
        """Whether the job is due at the end of epoch `epoch` (from 1)."""
        return bool(self.every_epochs and epoch % self.every_epochs == 0)


class EventsWriter:
    """A `tf.compat.v1.summary.FileWriter` into `logdir`, made at the first
    summary: a run that writes none (a resume with nothing left to train,
    an export) leaves no events file. The graph goes into the directory's
    first events file only, so TensorBoard sees one graph per run however
    often it is resumed."""

    def __init__(self, logdir, graph):
        self.logdir, self.graph, self._writer = logdir, graph, None

    def add_summary(self, summary, step):
        if self._writer is None:
            first = not glob.glob(os.path.join(self.logdir,
                                               "events.out.tfevents.*"))
            with self.graph.as_default():  # FileWriter refuses eager mode
                self._writer = tf1.summary.FileWriter(
                    self.logdir, self.graph if first else None)
        self._writer.add_summary(summary, step)

    def flush(self):
        if self._writer:
            self._writer.flush()

    def close(self):
        if self._writer:
            self._writer.close()


class Metrics:
    """Where scalar metrics go out: TensorBoard as `NAME/metric` (with a
    `writer`), one log line, and each `listeners` callable(step, name,
    metrics), e.g. an experiment's curve. TensorBoard gets one point per
    name and step, and none at or before `start_step` (the step a resumed
    run started from: the run before charted it; -1, any step, for a fresh
    one)."""

    def __init__(self, writer=None, listeners=()):
        self.writer, self.listeners = writer, list(listeners)
        self.start_step, self._charted = -1, {}

    def write(self, step, name, metrics, log_it=True):
        """Sends `metrics` of `step` out; the log line comes last, after
        the point is written (a process killed at the line has it)."""
        if self.writer and step > self._charted.get(name, self.start_step):
            self.writer.add_summary(tf1.Summary(value=[
                tf1.Summary.Value(tag=f"{name}/{key}", simple_value=value)
                for key, value in metrics.items()]), step)
            self.writer.flush()
            self._charted[name] = step
        for listener in self.listeners:
            listener(step, name, metrics)
        if log_it:
            log.info("step %d: %s", step, ", ".join(
                f"{name} {key} {value:.4f}" for key, value in metrics.items()))


class EpochHook(tf1.train.SessionRunHook):
    """A `SessionRunHook` that also hears of epochs, and is closed however
    training ends (an exception included)."""

    def begin_epoch(self, session, epoch, batches):
        """Epoch `epoch` (counted from 0) starts, with `batches` steps left."""

    def end_epoch(self, session, record):
        """An epoch ended; `record` is its entry in `train`'s history (a
        hook may add to it)."""

    def close(self):
        """The last call, after `end` or an exception."""


class CheckpointHook(EpochHook):
    """Saves a checkpoint when `trigger` says (`Trigger(every_secs=...,
    every_steps=...)`), at each epoch's end and at the end; never of a
    diverged state.

    checkpoints: a `checkpoints.Checkpoints`."""

    def __init__(self, checkpoints, trigger):
        self.checkpoints, self.trigger = checkpoints, trigger

    def begin(self):
        self._global_step = tf1.train.get_global_step()
        self.trigger.restart()

    def begin_epoch(self, session, epoch, batches):
        self._epoch_end = int(session.run(self._global_step)) + batches

    def after_run(self, run_context, run_values):
        step = run_context.step + 1
        # The epoch's last step is saved by end_epoch, with the epoch counted.
        if step != self._epoch_end and self.trigger.due(step):
            self.save(run_context.session)

    def end_epoch(self, session, record):
        self.save(session)

    def end(self, session):
        self.save(session)

    def save(self, session):
        """Saves the current step unless it is saved already; returns the
        checkpoint's path. Raises TrainingDiverged if a variable it would
        save is not finite."""
        step = int(session.run(self._global_step))
        self.trigger.fires(step, forced=True)  # the period restarts here
        if step == self.checkpoints.latest_step:
            return self.checkpoints.latest
        if not session.run(self.checkpoints.all_finite):
            raise TrainingDiverged(
                f"training diverged: a variable is not finite at step {step}; "
                f"the last good checkpoint is {last_good(self.checkpoints)}")
        return self.checkpoints.save(session, step)


class DivergenceHook(EpochHook):
    """Stops training with `TrainingDiverged` at the first non-finite loss.

    loss: the scalar tensor to watch; checkpoints: the run's
    `checkpoints.Checkpoints` (or None), to name the last good one."""

    def __init__(self, loss, checkpoints=None):
        self.loss, self.checkpoints = loss, checkpoints

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self.loss)

    def after_run(self, run_context, run_values):
        loss = run_values.results
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged: the loss is {loss} at step "
                f"{run_context.step + 1}; "
                f"the last good checkpoint is {last_good(self.checkpoints)}")


class SummaryHook(EpochHook):
    """Writes the `summary` op's value to `writer` at the steps `trigger`
    says (default: every SUMMARY_EVERY steps)."""

    def __init__(self, writer, summary, trigger=None):
        self.writer, self.summary = writer, summary
        self.trigger = trigger or Trigger(every_steps=SUMMARY_EVERY)

    def begin(self):
        self.trigger.restart()

    def before_run(self, run_context):
        if self.trigger.fires(run_context.step):
            return tf1.train.SessionRunArgs(self.summary)
        return None

    def after_run(self, run_context, run_values):
        if run_values.results is not None:
            self.writer.add_summary(run_values.results, run_context.step)

    def end(self, session):
        self.writer.flush()


class SignalHook(EpochHook):
    """While training, the first SIGINT or SIGTERM stops it after the
    current step (`received` says which), and training ends normally, so
    `CheckpointHook.end` saves; after a second SIGINT the step's end
    raises KeyboardInterrupt (see `signals.StopOnSignal`)."""

    def __init__(self):
        self._signals = StopOnSignal()

    @property
    def received(self):
        return self._signals.received

    def begin(self):
        self._signals.__enter__()

    def after_run(self, run_context, run_values):
        if self._signals.interrupted_twice:
            self._signals.raise_interrupt()
        if self._signals.received:
            run_context.request_stop()

    def close(self):
        self._signals.__exit__(None, None, None)


class ProgressHook(EpochHook):
    """A progress bar per epoch (loss, images/s) when `bar`, and a log line
    at each epoch's end. `fetches` is the train graph's fetch dict."""

    def __init__(self, fetches, bar):
        self.fetches, self.bar = fetches, bar
        self._bar = None

    def begin_epoch(self, session, epoch, batches):
        from tqdm import tqdm
        self._bar = tqdm(total=batches, desc=f"epoch {epoch + 1}",
                         disable=not self.bar, unit="step", leave=False)
        self._start, self._images = time.perf_counter(), 0

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs((self.fetches["loss"],
                                         self.fetches["count"]))

    def after_run(self, run_context, run_values):
        loss, count = run_values.results
        self._images += count
        seconds = time.perf_counter() - self._start
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.3f}",
                              img_s=f"{self._images / seconds:.0f}",
                              refresh=False)

    def end_epoch(self, session, record):
        self.close()
        log.info("epoch %(epoch)d step %(step)d: loss %(loss).4f, "
                 "accuracy %(accuracy).4f, %(images_per_second).0f img/s",
                 record)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EvaluationHook(EpochHook):
    """Evaluates when `trigger` says: `evaluate(session)` returns a dict of
    metrics (e.g. `loss`, `accuracy`). Each result goes to `history`
    ({"step": ..., **metrics}), out through `metrics` (a `Metrics`: as
    `NAME/metric` to TensorBoard, the log, its listeners) and, at an
    epoch's end, into the epoch's record as `NAME_metric`.

    `ConvolutionNN.evaluation_hook` makes one for the test split or any
    held-out images; `history` may hold the points of a run before."""

    def __init__(self, evaluate, trigger, metrics=None, name="test",
                 history=None):
        self.evaluate, self.trigger, self.name = evaluate, trigger, name
        self.metrics = metrics or Metrics()
        self.history = [] if history is None else history

    def begin(self):
        self.trigger.restart()

    def after_run(self, run_context, run_values):
        step = run_context.step + 1
        if self.trigger.fires(step):
            self.evaluate_at(run_context.session, step)

    def end_epoch(self, session, record):
        if self.trigger.due_epoch(record["epoch"]):
            if self.trigger.fires(record["step"], forced=True):
                self.evaluate_at(session, record["step"])
            if self.history and self.history[-1]["step"] == record["step"]:
                record.update({f"{self.name}_{key}": value
                               for key, value in self.history[-1].items()
                               if key != "step"})

    def evaluate_at(self, session, step):
        """Evaluates now, at global step `step`, whatever the trigger says
        (it is not told): the metrics go into `history` and out through
        `metrics`."""
        metrics = self.evaluate(session)
        self.history.append({"step": int(step), **metrics})
        self.metrics.write(int(step), self.name, metrics)


def last_good(checkpoints):
    """How an error names the newest good checkpoint."""
    if checkpoints is None:
        return "none (no model_dir)"
    epoch = checkpoints.epoch_checkpoint()
    if epoch is None or epoch == checkpoints.latest:
        return checkpoints.latest or "none"
    return (f"{checkpoints.latest} (should it diverge again: {epoch}, the "
            f"newest of a completed epoch, is kept; move the newer ones "
            f"away to resume from it)")
