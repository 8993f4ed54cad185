"""Checkpoints of a model directory: save, and restore the newest readable one.

A model directory holds `model.json` (what model and dataset its checkpoints
belong to) and the last few checkpoints of a `tf.compat.v1.train.Saver`.
Restoring refuses a checkpoint of another model, with a message saying how
they differ (TensorFlow itself would silently reshape a variable), and passes
over a checkpoint it cannot read (truncated, corrupt) to the next older one.
"""
import json
import logging
import os

import tensorflow as tf

from resnet.paths import check_writable_dir

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

SIGNATURE_FILE = "model.json"
KEEP = 5  # checkpoints kept


class CheckpointMismatchError(ValueError):
    """The model directory holds checkpoints of another model."""


def check_model_dir(model_dir):
    """Raises ValueError unless `model_dir` is None or a directory that can
    be created or written to."""
    if model_dir is not None:
        check_writable_dir(model_dir, "model_dir")


class Checkpoints:
    """The checkpoints of `model_dir` for the model described by `signature`
    (a JSON-able dict). Build it in the graph whose variables it saves."""

    def __init__(self, model_dir, signature, keep=KEEP):
        self.model_dir = os.path.expanduser(model_dir)
        self.signature = signature
        self._graph = tf1.get_default_graph()
        self._variables = {v.op.name: v for v in tf1.global_variables()}
        self.saver = tf1.train.Saver(list(self._variables.values()),
                                     max_to_keep=keep,
                                     save_relative_paths=True)
        # Whether every float variable it saves is finite: the moving
        # statistics and optimizer slots as well as the weights.
        self.all_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(v))
             for v in self._variables.values() if v.dtype.is_floating],
            name="all_finite")
        self.latest = None  # the path of the newest good checkpoint

    @property
    def latest_step(self):
        """The global step of `latest`, or None."""
        return int(self.latest.rsplit("-", 1)[1]) if self.latest else None

    def save(self, session, step):
        os.makedirs(self.model_dir, exist_ok=True)
        signature_path = os.path.join(self.model_dir, SIGNATURE_FILE)
        if not os.path.exists(signature_path):
            with open(signature_path, "w") as f:
                json.dump(self.signature, f, indent=1, sort_keys=True)
        with self._graph.as_default():
            self.latest = self.saver.save(
                session, os.path.join(self.model_dir, "model.ckpt"),
                global_step=step, write_meta_graph=False)
        log.info("saved checkpoint %s", self.latest)
        return self.latest

    def restore(self, session):
        """Restores the newest readable checkpoint; returns its path, or None
        if there is none. Raises CheckpointMismatchError for another model's.
        """
        state = tf1.train.get_checkpoint_state(self.model_dir)
        if state is None:
            return None
        self._check_signature()
        for path in reversed(state.all_model_checkpoint_paths):
            path = os.path.join(self.model_dir, os.path.basename(path))
            try:
                shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
            except (tf.errors.OpError, ValueError) as error:
                log.warning("checkpoint %s cannot be read (%s); trying the "
                            "one before", path, _first_line(error))
                continue
            self._check_variables(path, shapes)
            try:
                with self._graph.as_default():
                    self.saver.restore(session, path)
            except (tf.errors.OpError, ValueError) as error:
                log.warning("checkpoint %s cannot be restored (%s); trying "
                            "the one before", path, _first_line(error))
                continue
            log.info("restored checkpoint %s", path)
            self.latest = path
            return path
        log.warning("no readable checkpoint in %s: starting afresh",
                    self.model_dir)
        return None

    def _check_signature(self):
        path = os.path.join(self.model_dir, SIGNATURE_FILE)
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as error:
            raise CheckpointMismatchError(f"{path}: unreadable ({error})") from None
        # JSON turns tuples into lists: compare in JSON form.
        differences = _differences(saved, json.loads(json.dumps(self.signature)))
        if differences:
            raise CheckpointMismatchError(
                f"{self.model_dir} holds checkpoints of another model "
                f"({'; '.join(differences[:4])}"
                f"{'; ...' if len(differences) > 4 else ''}): choose another "
                f"model_dir")

    def _check_variables(self, path, shapes):
        differences = []
        for name, var in self._variables.items():
            if name not in shapes:
                differences.append(f"{name} missing")
            elif list(shapes[name]) != var.shape.as_list():
                differences.append(f"{name} is {shapes[name]} there, "
                                   f"{var.shape.as_list()} here")
        if differences:
            raise CheckpointMismatchError(
                f"checkpoint {path} is of another model "
                f"({'; '.join(differences[:3])}"
                f"{'; ...' if len(differences) > 3 else ''}): "
                f"choose another model_dir")


def _differences(there, here, path=""):
    """The fields in which two JSON values differ, each as one short
    'path: value there, value here'."""
    if isinstance(there, dict) and isinstance(here, dict):
        return [line for key in sorted(set(there) | set(here))
                for line in _differences(there.get(key), here.get(key),
                                         f"{path}.{key}" if path else key)]
    if isinstance(there, list) and isinstance(here, list):
        if len(there) != len(here):
            return [f"{path}: {len(there)} items there, {len(here)} here"]
        return [line for index, (a, b) in enumerate(zip(there, here))
                for line in _differences(a, b, f"{path}[{index}]")]
    if there == here:
        return []
    return [f"{path}: {_short(there)} there, {_short(here)} here"]


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first_line(error):
    return str(error).strip().splitlines()[0]
