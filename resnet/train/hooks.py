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
import logging
import math
import numbers
import time

import numpy as np
import tensorflow as tf

from batch_renorm import step_value
from resnet.errors import TrainingDiverged
from resnet.train.signals import StopOnSignal

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

CHECKPOINT_SECS = 300   # seconds of training between checkpoints
SUMMARY_EVERY = 20      # steps between TensorBoard training summaries


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
    """Saves a checkpoint every `secs` seconds or `steps` steps of training,
    at each epoch's end and at the end; never of a diverged state.

    checkpoints: a `checkpoints.Checkpoints`."""

    def __init__(self, checkpoints, secs=CHECKPOINT_SECS, steps=None):
        check_checkpoint_schedule(secs, steps)
        self.checkpoints, self.secs, self.steps = checkpoints, secs, steps

    def begin(self):
        self._step = step_value()
        self._global_step = tf1.train.get_global_step()
        self._last_save = time.monotonic()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step)

    def begin_epoch(self, session, epoch, batches):
        self._epoch_end = int(session.run(self._global_step)) + batches

    def after_run(self, run_context, run_values):
        step = run_values.results + 1
        if step == self._epoch_end:
            return  # saved by end_epoch, with the epoch counted
        if ((self.steps and step % self.steps == 0)
                or time.monotonic() - self._last_save >= self.secs):
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
        self._last_save = time.monotonic()
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
    """Writes the `summary` op's value to `writer` every `every` steps."""

    def __init__(self, writer, summary, every=SUMMARY_EVERY):
        self.writer, self.summary, self.every = writer, summary, every

    def begin(self):
        self._step = step_value()
        self._global_step = tf1.train.get_global_step()

    def after_create_session(self, session, coord):
        self._next = int(session.run(self._global_step))

    def before_run(self, run_context):
        fetches = {"step": self._step}
        if self._next % self.every == 0:
            fetches["summary"] = self.summary
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
    current step (`received` says which); a second one stops the process at
    once. Training ends normally, so `CheckpointHook.end` saves."""

    def __init__(self):
        self._signals = StopOnSignal()

    @property
    def received(self):
        return self._signals.received

    def begin(self):
        self._signals.__enter__()

    def after_run(self, run_context, run_values):
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
    """Evaluates every `every_steps` steps and/or every `every_epochs`
    epochs: `evaluate(session)` returns a dict of metrics (e.g. `loss`,
    `accuracy`). Each result goes to `history` ({"step": ..., **metrics}),
    to TensorBoard as `NAME/metric` (with a `writer`) and, at an epoch's
    end, into the epoch's record as `NAME_metric`.

    `ConvolutionNN.evaluation_hook` makes one for the test split or any
    held-out images."""

    def __init__(self, evaluate, every_steps=None, every_epochs=None,
                 writer=None, name="test"):
        for label, value in (("every_steps", every_steps),
                             ("every_epochs", every_epochs)):
            if value is not None and not (
                    isinstance(value, numbers.Integral) and value >= 1):
                raise ValueError(f"{label} must be an integer >= 1 or None, "
                                 f"got {value!r}")
        if every_steps is None and every_epochs is None:
            raise ValueError("give every_steps, every_epochs or both")
        self.evaluate, self.writer, self.name = evaluate, writer, name
        self.every_steps, self.every_epochs = every_steps, every_epochs
        self.history = []

    def begin(self):
        self._step = step_value()

    def before_run(self, run_context):
        if self.every_steps:
            return tf1.train.SessionRunArgs(self._step)
        return None

    def after_run(self, run_context, run_values):
        if self.every_steps and (run_values.results + 1) % self.every_steps == 0:
            self._run(run_context.session, run_values.results + 1)

    def end_epoch(self, session, record):
        if self.every_epochs and record["epoch"] % self.every_epochs == 0:
            metrics = self._run(session, record["step"])
            record.update({f"{self.name}_{key}": value
                           for key, value in metrics.items()})

    def _run(self, session, step):
        if self.history and self.history[-1]["step"] == step:
            return {k: v for k, v in self.history[-1].items() if k != "step"}
        metrics = self.evaluate(session)
        self.history.append({"step": int(step), **metrics})
        if self.writer:
            write_scalars(self.writer, self.name, metrics, step)
        log.info("step %d: %s", step, ", ".join(
            f"{self.name} {key} {value:.4f}" for key, value in metrics.items()))
        return metrics


class LastValuesHook(EpochHook):
    """Fetches a dict of scalar tensors every step and adds their values at
    an epoch's last step to the epoch's record (e.g. `TrainGraph.renorm`)."""

    def __init__(self, tensors):
        self.tensors, self.values = dict(tensors), {}

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self.tensors) if self.tensors else None

    def after_run(self, run_context, run_values):
        if self.tensors:
            self.values = {key: float(value)
                           for key, value in run_values.results.items()}

    def end_epoch(self, session, record):
        record.update(self.values)


def write_scalars(writer, prefix, metrics, step):
    """Writes `metrics` as TensorBoard scalars `prefix/name` at `step`."""
    writer.add_summary(tf1.Summary(value=[
        tf1.Summary.Value(tag=f"{prefix}/{name}", simple_value=value)
        for name, value in metrics.items()]), step)
    writer.flush()


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


def check_checkpoint_schedule(secs, steps):
    """Raises ValueError unless secs is a number > 0 (inf: never by time)
    and steps None or an integer >= 1."""
    if (not isinstance(secs, numbers.Real) or isinstance(secs, bool)
            or math.isnan(secs) or secs <= 0):
        raise ValueError(f"checkpoint_secs must be a number > 0, got {secs!r}")
    if steps is not None and (not isinstance(steps, numbers.Integral)
                              or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"checkpoint_steps must be an integer >= 1 or None, "
                         f"got {steps!r}")
