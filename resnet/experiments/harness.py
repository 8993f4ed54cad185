"""Arms x seeds of an experiment: train each, record test accuracy over
training steps, and write a JSON of every curve, a markdown table of final
accuracies (mean +- std over seeds) and a PNG plot to an output folder,
with TensorBoard logs of each run under it.

Runs already recorded in the output's results.json are not run again, so an
interrupted experiment picks up where it stopped.

Typical use (see examples/renorm_microbatch.py):
    arms = [Arm("batch norm", "batch_norm"),
            Arm("batch renorm, microbatches of 4", "batch_renorm", microbatch=4)]
    run(arms, Setup(dataset="fashion_mnist", epochs=10), "results/microbatch")
"""
import dataclasses
import json
import logging
import os
import subprocess
from typing import Optional

import numpy as np
from batch_renorm.tensorflow_quiet import tf

from batch_renorm.schedule import DEFAULT_SCHEDULE, SCHEDULES
from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.data import datasets
from resnet.data.input_pipeline import (batches_per_epoch, non_iid_order,
                                        trim_unit)
from resnet.errors import UsageError
from resnet.experiments.report import (plot, plot_group_sizes, summarize,
                                       sweep_table, table)
from resnet.runtime import session_config
from resnet.storage.atomic import json_differences, read_json, write_json
from resnet.storage.model_dir import DirectoryLock
from resnet.train.config import run_length_defaults
from resnet.train.hooks import EpochHook, EvaluationHook, Metrics, Trigger

tf1 = tf.compat.v1

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration compared: its norm, how its batches are made, and
    what is measured at the end besides the curve.

    microbatch: the norms' groups (None: the whole batch).
    classes_per_group, group_size: non-i.i.d. groups of the sampler
      (`input_pipeline.non_iid_order`; group_size None: the whole batch).
    schedule, rmax, dmax: the renorm ramp's rule of
      `batch_renorm.schedule.SCHEDULES` and its limits (None: the setup's).
    diagnostics: final test accuracies with other statistics
      (`ConvolutionNN.evaluate`): "population" (recomputed over the
      training set), "batch" (each test group's own, the test set ordered
      in groups as the training batches are).
    """
    name: str
    norm: Optional[str]
    microbatch: Optional[int] = None
    classes_per_group: Optional[int] = None
    group_size: Optional[int] = None
    schedule: Optional[str] = None
    rmax: Optional[float] = None
    dmax: Optional[float] = None
    diagnostics: tuple = ()


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every arm shares. `eval_every`: test accuracy every so many
    steps (and at the end); `schedule`: the rule of
    `batch_renorm.schedule.SCHEDULES` that fits the renorm ramp to the run;
    `precision`: what the runs compute in (`session_config.PRECISIONS`):
    float32 by default, so that results do not depend on the CPU's kind."""
    dataset: str = "fashion_mnist"
    depth: int = 8
    strides: tuple = (1, 2, 2)          # the ResNet stages' first strides
    batch_size: int = 128
    epochs: int = 10
    train_images: Optional[int] = None  # a stratified subset, for quick runs
    test_images: Optional[int] = None   # the first test images only
    learning_rate: float = 0.1
    norm_momentum: float = 0.99         # alpha = 0.01, the paper's
    seeds: tuple = (0, 1, 2)
    eval_every: int = 100
    schedule: str = DEFAULT_SCHEDULE
    precision: str = "float32"          # session_config's: the same on every CPU


class SetupChangedError(UsageError):
    """The output folder holds results of another setup."""


def run(arms, setup, out_dir, data_dir=None, roles=None, threads=None):
    """Runs every arm with every seed, seed by seed; returns the results
    dict. A run's curve is saved after every point: an interrupted run
    resumes from its checkpoint with its curve so far.

    `roles` names the arms the recovered fraction compares: {"baseline":
    ARM, "batch_norm": ARM, "batch_renorm": ARM}; results.json keeps it.
    `threads`: each op's threads (None: `session_config`'s default), e.g. 1
    to run two experiments side by side on two cores."""
    lock = DirectoryLock(out_dir, "--out")  # one experiment per folder
    try:
        return _run(arms, setup, out_dir, data_dir, roles, threads)
    finally:
        lock.release()


def _run(arms, setup, out_dir, data_dir, roles, threads):
    path = os.path.join(out_dir, "results.json")
    results = _load(path, setup, arms)
    results["roles"] = roles
    ds = _dataset(setup, data_dir)
    for seed in setup.seeds:
        for arm in arms:
            key = f"{arm.name} / seed {seed}"
            if key in results["runs"]:
                log.info("%s: done already", key)
                continue
            log.info("%s: training", key)

            def save_partial(curve, key=key):
                results["partial"][key] = curve
                write_json(path, results, sort_keys=False)

            record = _train(arm, setup, ds, seed, out_dir,
                            results["partial"].get(key, []), save_partial,
                            threads)
            results["runs"][key] = dict(arm=arm.name, seed=seed, **record)
            results["partial"].pop(key, None)
            write_json(path, results, sort_keys=False)  # nothing is lost
    summary = summarize(results, [arm.name for arm in arms])
    swept = sweep_table(results, summary, roles)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(table(summary, setup, roles)
                + (f"\nBy group size:\n\n{swept}" if swept else ""))
    plot(results, [arm.name for arm in arms],
         os.path.join(out_dir, "accuracy.png"))
    if swept:
        plot_group_sizes(results, summary, roles,
                         os.path.join(out_dir, "group_sizes.png"))
    return results


def _load(path, setup, arms):
    """The results so far in `path`, or new ones. Another setup, or an arm
    of the same name defined otherwise, is refused; arms may be added or
    left out (their runs stay recorded)."""
    setup_dict = json.loads(json.dumps(dataclasses.asdict(setup)))
    arms_dict = json.loads(json.dumps(
        {arm.name: dataclasses.asdict(arm) for arm in arms}))
    results = read_json(path)
    if not isinstance(results, dict) and os.path.exists(path):
        raise SetupChangedError(f"{path} is unreadable: move it away")
    if results is None:
        return {"setup": setup_dict, "arms": arms_dict,
                "provenance": provenance(), "runs": {}, "partial": {}}
    changed = json_differences(results.get("setup"), setup_dict) + [
        f"arm {name!r}: {difference}" for name, arm in arms_dict.items()
        if name in results.get("arms", {})
        for difference in json_differences(results["arms"][name], arm)]
    if changed:
        raise SetupChangedError(
            f"{os.path.dirname(path)} holds results of another setup "
            f"({'; '.join(changed[:4])}): choose another --out, or move it "
            f"away")
    results["arms"] = {**results.get("arms", {}), **arms_dict}
    results.setdefault("partial", {})
    started, now = (results.get("provenance", {}).get("commit"),
                    provenance()["commit"])
    if started != now:
        log.warning("%s was started at commit %s, this is %s", path,
                    started, now)
    return results


def provenance():
    """The code's commit and the versions the results come from."""
    import platform
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {"commit": commit, "python": platform.python_version(),
            "tensorflow": tf.__version__, "numpy": np.__version__,
            "cpu": session_config.cpu_description()}


def _dataset(setup, data_dir):
    ds = datasets.load(setup.dataset, data_dir)
    if setup.train_images:
        # A stratified subset: the first images of a fixed shuffle, by class.
        order = np.random.RandomState(0).permutation(len(ds.x_train))
        per_class = setup.train_images // ds.num_classes
        keep = np.concatenate([order[ds.y_train[order] == c][:per_class]
                               for c in range(ds.num_classes)])
        ds = dataclasses.replace(ds, x_train=ds.x_train[keep],
                                 y_train=ds.y_train[keep])
    if setup.test_images:
        ds = dataclasses.replace(ds, x_test=ds.x_test[:setup.test_images],
                                 y_test=ds.y_test[:setup.test_images])
    return ds


def _train(arm, setup, ds, seed, out_dir, curve, save, threads):
    """Trains one arm with one seed; returns {"curve", "renorm_schedule",
    "diagnostics"}. `curve` holds the points recorded so far (of an
    interrupted run); `save(curve)` is called after each new point."""
    total = setup.epochs * batches_per_epoch(
        len(ds.x_train), setup.batch_size, trim_unit(1, arm.microbatch))
    defaults = run_length_defaults(total, setup.norm_momentum)
    ramp = ramp_of(arm, setup, total)
    network = models.resnet(setup.depth, ds.num_classes, norm=arm.norm,
                            norm_momentum=setup.norm_momentum,
                            microbatch=arm.microbatch, renorm_schedule=ramp,
                            strides=tuple(setup.strides))
    run_dir = os.path.join(out_dir, "runs",
                           f"{arm.name}-seed{seed}".replace(" ", "_")
                           .replace(",", "").replace("/", "_"))
    with ConvolutionNN(network, ds, learning_rate=setup.learning_rate,
                       **defaults["train"],
                       model_dir=run_dir, seed=seed, progress=False,
                       classes_per_group=arm.classes_per_group,
                       group_size=arm.group_size,
                       session_config=session_config.session_config(
                           intra_threads=threads, inter_threads=threads,
                           precision=setup.precision,
                           batch_size=setup.batch_size,
                           image_shape=ds.image_shape)) as cnn:
        step = int(cnn.session.run(cnn.global_step))
        curve = [point for point in curve if point["step"] <= step]
        hook = CurveHook(lambda session: cnn.evaluate()["accuracy"],
                         cnn.train_graph, setup.eval_every, setup.epochs, curve,
                         Metrics(listeners=[lambda *point: save(curve)]))
        cnn.train(setup.batch_size, setup.epochs - cnn.epochs_done,
                  hooks=[hook])
        diagnostics = {name: diagnostic(name, cnn, arm, seed)
                       for name in arm.diagnostics}
    return {"curve": curve, "diagnostics": diagnostics,
            "renorm_schedule": ramp if arm.norm == "batch_renorm" else None}


def ramp_of(arm, setup, total_steps):
    """The renorm schedule's keyword arguments of `arm` in a run of
    `total_steps`: the setup's rule (by default the run-length defaults'
    `short_run_schedule`) or the arm's, with the arm's limits."""
    ramp = SCHEDULES[arm.schedule or setup.schedule](total_steps,
                                                     setup.norm_momentum)
    limits = {key: value for key, value in (("rmax", arm.rmax),
                                            ("dmax", arm.dmax))
              if value is not None}
    return {**ramp, **limits} if limits else ramp


def diagnostic(name, cnn, arm, seed):
    """The final test accuracy of the trained `cnn` with the statistics of
    diagnostic `name` (see `Arm`)."""
    images, labels = cnn.dataset.x_test, cnn.dataset.y_test
    if name == "batch" and arm.classes_per_group:
        # Test groups built as the training groups are.
        group = cnn.network.microbatch
        if not group:
            raise UsageError(f"{arm.name}: the 'batch' diagnostic of "
                             f"non-i.i.d. groups needs the norms' microbatch")
        order = non_iid_order(seed, 0, labels, group * max(1, 500 // group),
                              arm.classes_per_group, group)
        images, labels = images[order], labels[order]
    return cnn.evaluate(images, labels, statistics=name)["accuracy"]


class CurveHook(EpochHook):
    """An experiment's curve: every `every` steps and at the end of epoch
    `last_epoch` (the run's last), a point {"step", "test_accuracy"
    (inference mode), "train_accuracy" (of the training batches since the
    last point), and batch renorm's clipping at that step (r_clipped,
    d_clipped, r_mean, d_abs_mean)}, made by an `EvaluationHook` it runs.
    A run stopped before its end (a signal) adds no point where it stopped:
    resumed, its curve is the uninterrupted run's. Its `history` is the
    curve (an interrupted run's points first); each point goes out through
    `metrics` (the log, and the listener that saves it)."""

    def __init__(self, test_accuracy, train_graph, every, last_epoch, curve,
                 metrics):
        self.points = EvaluationHook(self._point, Trigger(every_steps=every),
                                     metrics, name="curve", history=curve)
        self._test_accuracy = test_accuracy
        self.last_epoch = last_epoch
        self._fetches = {"correct": train_graph.fetches["correct"],
                         "count": train_graph.fetches["count"],
                         **train_graph.renorm}
        self._correct = self._count = 0

    @property
    def history(self):
        """The curve: the `EvaluationHook`'s points."""
        return self.points.history

    def begin(self):
        self.points.begin()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        self._last = values = run_values.results
        self._correct += values["correct"]
        self._count += values["count"]
        self.points.after_run(run_context, run_values)

    def end_epoch(self, session, record):
        step = record["step"]
        if (record["epoch"] == self.last_epoch and self._count
                and self.points.trigger.fires(step, forced=True)):
            self.points.evaluate_at(session, step)

    def _point(self, session):
        point = {"test_accuracy": float(self._test_accuracy(session)),
                 "train_accuracy": float(self._correct / self._count),
                 **{key: float(self._last[key]) for key in self._fetches
                    if key not in ("correct", "count")}}
        self._correct = self._count = 0
        return point
