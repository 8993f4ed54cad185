"""The training loop's side jobs, as TensorFlow 1 `SessionRunHook`s.

`loop.train` calls each hook through `tf.compat.v1.train.SessionRunHook`'s
interface: `begin` (the graph is the default graph and may still grow),
`after_create_session`, `before_run` (returning `SessionRunArgs`: what to
fetch along with the step), `after_run`, and `end` once training has ended
normally or a hook asked it to stop (`run_context.request_stop()`); not
after an exception. The hooks here also hear of epochs (`EpochHook`).

A hook of your own is a plain `SessionRunHook`, e.g. one that logs the mean
r of the first batch renorm layer every 100 steps:

    class LogR(tf.compat.v1.train.SessionRunHook):
        def begin(self):
            self.r = batch_renorm.norm_layers()[0].r
            self.step = batch_renorm.step_value()
        def before_run(self, run_context):
            return tf.compat.v1.train.SessionRunArgs((self.r, self.step))
        def after_run(self, run_context, run_values):
            r, step = run_values.results
            if step % 100 == 0:
                print(step, r.mean())

    cnn.train(batch_size=128, num_epoch=2, hooks=[LogR()])

Reference: TensorFlow 1's `CheckpointSaverHook`, `NanTensorHook`,
`SummarySaverHook`; tensorpack's `Callback`s.
"""
import glob
import logging
import os
import time

import numpy as np
import tensorflow as tf

from batch_renorm import step_value
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
        self.restart()

    def restart(self):
        """The time period counts from now."""
        self._last = time.monotonic()

    def due(self, step):
        """Whether the job is due once global step `step` has run (steps
        count from 1; a due job then calls `restart`)."""
        return bool((self.every_steps and step % self.every_steps == 0) or
                    (self.every_secs is not None and
                     time.monotonic() - self._last >= self.every_secs))

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
        self._step = step_value()
        self._global_step = tf1.train.get_global_step()
        self.trigger.restart()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step)

    def begin_epoch(self, session, epoch, batches):
        self._epoch_end = int(session.run(self._global_step)) + batches

    def after_run(self, run_context, run_values):
        step = run_values.results + 1
        if step == self._epoch_end:
            return  # saved by end_epoch, with the epoch counted
        if self.trigger.due(step):
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
        self.trigger.restart()
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

    def begin(self):
        self._step = step_value()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs((self.loss, self._step))

    def after_run(self, run_context, run_values):
        loss, step = run_values.results
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged: the loss is {loss} at step {step + 1}; "
                f"the last good checkpoint is {last_good(self.checkpoints)}")


class SummaryHook(EpochHook):
    """Writes the `summary` op's value to `writer` at the steps `trigger`
    says (default: every SUMMARY_EVERY steps)."""

    def __init__(self, writer, summary, trigger=None):
        self.writer, self.summary = writer, summary
        self.trigger = trigger or Trigger(every_steps=SUMMARY_EVERY)

    def begin(self):
        self._step = step_value()
        self._global_step = tf1.train.get_global_step()

    def after_create_session(self, session, coord):
        self._next = int(session.run(self._global_step))

    def before_run(self, run_context):
        fetches = {"step": self._step}
        if self.trigger.due(self._next):
            fetches["summary"] = self.summary
            self.trigger.restart()
        return tf1.train.SessionRunArgs(fetches)

    def after_run(self, run_context, run_values):
        step = run_values.results["step"]
        if "summary" in run_values.results:
            self.writer.add_summary(run_values.results["summary"], step)
        self._next = step + 1

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
    held-out images."""

    def __init__(self, evaluate, trigger, metrics=None, name="test"):
        self.evaluate, self.trigger, self.name = evaluate, trigger, name
        self.metrics = metrics or Metrics()
        self.history = []

    def begin(self):
        self._step = step_value()
        self.trigger.restart()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
        step = run_values.results + 1
        if self.trigger.due(step):
            self._run(run_context.session, step)

    def end_epoch(self, session, record):
        if self.trigger.due_epoch(record["epoch"]):
            metrics = self._run(session, record["step"])
            record.update({f"{self.name}_{key}": value
                           for key, value in metrics.items()})

    def _run(self, session, step):
        self.trigger.restart()
        if self.history and self.history[-1]["step"] == step:
            return {k: v for k, v in self.history[-1].items() if k != "step"}
        metrics = self.evaluate(session)
        self.history.append({"step": int(step), **metrics})
        self.metrics.write(int(step), self.name, metrics)
        return metrics


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
