"""Checkpoints of a model directory: save, rotate, and restore the newest
readable one.

A model directory holds `model.json` (what model and dataset its checkpoints
belong to), `run.json` (the training arguments of the run that wrote them)
and the last few checkpoints of a `tf.compat.v1.train.Saver`. Its promises:
  - The checkpoint files themselves are the truth: they are found by
    listing `model.ckpt-N.index`, not through TensorFlow's `checkpoint`
    index (rewritten after every save for TensorBoard and
    `tf.train.latest_checkpoint`, but it may be lost or garbled).
  - Nothing is written over: a checkpoint that cannot be read is moved to
    `damaged/` (passing to the next older one), never overwritten.
  - Restoring refuses a checkpoint of another model, naming the fields that
    differ (TensorFlow itself would silently reshape a variable); without a
    readable `model.json`, the checkpoint's variables are compared.
  - Rotation counts every checkpoint in the directory (every resumed run's):
    the newest `KEEP`, and the newest one taken at the end of an epoch, so
    that a run that diverges with a checkpoint every step still has one
    from before.
  - One run at a time: hold the directory's `model_dir.DirectoryLock`.
  - `model.json` and `run.json` are written atomically (temporary file,
    fsync, rename).
"""
import contextlib
import json
import logging
import os
import re
import shutil

from batch_renorm.tensorflow_quiet import tf

from resnet.errors import (CheckpointMismatchError, CheckpointSaveError,
                           RunChangedError)
from resnet.storage.atomic import (failure_reason, first_line, free_space,
                                  json_differences, read_json, write_json,
                                  write_text)

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

SIGNATURE_FILE = "model.json"
# Signature fields an earlier version did not record: not checked there.
LATER_FIELDS = ("class_names", "normalizer")
RUN_FILE = "run.json"
DAMAGED_DIR = "damaged"
PREFIX = "model.ckpt"
KEEP = 5  # checkpoints kept, besides the newest of a completed epoch
_CHECKPOINT = re.compile(r"^model\.ckpt-(\d+)\.index$")
# The variable of `graphs.build_epoch_state` that says where the epoch under
# way started: a checkpoint at an epoch's end holds its own step there.
EPOCH_START = "train_state/epoch_start_step"


class Checkpoints:
    """The checkpoints of `model_dir` for the model described by `signature`
    (a JSON-able dict). Build it in the graph whose variables it saves, and
    hold the directory's `DirectoryLock` while using it."""

    def __init__(self, model_dir, signature, keep=KEEP):
        self.model_dir = os.path.expanduser(model_dir)
        self.signature = signature
        self.keep = keep
        self._graph = tf1.get_default_graph()
        self._variables = {v.op.name: v for v in tf1.global_variables()}
        # Rotation is ours (over the whole directory), not the Saver's.
        self.saver = tf1.train.Saver(list(self._variables.values()),
                                     max_to_keep=0,
                                     save_relative_paths=True)
        # Whether every float variable it saves is finite: the moving
        # statistics and optimizer slots as well as the weights.
        self.all_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(v))
             for v in self._variables.values() if v.dtype.is_floating],
            name="all_finite")
        self.latest = None  # the path of the newest good checkpoint
        self._signature_written = False

    @property
    def latest_step(self):
        """The global step of `latest`, or None."""
        return _step_of(self.latest) if self.latest else None

    def steps(self):
        """The steps of the checkpoints in the directory, oldest first."""
        if not os.path.isdir(self.model_dir):
            return []
        return sorted(int(match.group(1)) for match in
                      map(_CHECKPOINT.match, os.listdir(self.model_dir))
                      if match and os.path.isfile(self.path(match.group(1))
                                                  + ".index"))

    def path(self, step):
        return os.path.join(self.model_dir, f"{PREFIX}-{step}")

    def save(self, session, step):
        """Saves the variables as the checkpoint of `step`, then rotates;
        returns its path. Raises CheckpointSaveError (one line: what failed,
        the free space, the checkpoint still intact) if it cannot write."""
        path = self.path(step)
        with self._writing(f"checkpoint {path}"):
            if not self._signature_written:
                write_json(os.path.join(self.model_dir, SIGNATURE_FILE),
                           self.signature)
                self._signature_written = True
            if os.path.exists(path + ".index"):  # unreadable, or we'd have
                self._move_damaged(step)          # restored it: keep it
            with self._graph.as_default():
                self.saver.save(session, path, write_meta_graph=False,
                                write_state=False)
        self.latest = path
        log.info("saved checkpoint %s", path)
        self._rotate()
        return path

    @contextlib.contextmanager
    def _writing(self, what):
        """Turns a failure to write `what` into one CheckpointSaveError."""
        try:
            yield
        except (OSError, tf.errors.OpError) as error:
            kept = (f"the checkpoint before, {self.latest}, is intact"
                    if self.latest else "no checkpoint was written before")
            raise CheckpointSaveError(
                f"writing {what} failed ({failure_reason(error)}; "
                f"{free_space(self.model_dir)} free in {self.model_dir}); "
                f"{kept}") from None

    def _rotate(self):
        """Deletes all but the newest `keep` checkpoints and the newest one
        of a completed epoch; rewrites TensorFlow's `checkpoint` index."""
        steps = self.steps()
        kept = steps[-self.keep:]
        epoch_end = self._newest_epoch_end(steps)
        if epoch_end is not None and epoch_end not in kept:
            kept.insert(0, epoch_end)
        for step in steps:
            if step not in kept:
                for name in _files_of(self.model_dir, step):
                    os.remove(os.path.join(self.model_dir, name))
        # TensorFlow's index (a text CheckpointState), for its own tools.
        names = [os.path.basename(self.path(step)) for step in kept]
        index = "".join([f'model_checkpoint_path: "{names[-1]}"\n']
                        + [f'all_model_checkpoint_paths: "{name}"\n'
                           for name in names])
        try:
            write_text(os.path.join(self.model_dir, "checkpoint"), index)
        except OSError as error:  # only TensorFlow's tools read it
            log.warning("the checkpoint index of %s was not updated (%s)",
                        self.model_dir, failure_reason(error))

    def _newest_epoch_end(self, steps):
        """The newest of `steps` whose checkpoint was taken as an epoch
        ended (the epoch under way then starts at its own step), or None."""
        for step in reversed(steps):
            try:
                reader = tf.train.load_checkpoint(self.path(step))
                if step > 0 and reader.get_tensor(EPOCH_START) == step:
                    return step
            except (tf.errors.OpError, ValueError):
                continue
        return None

    def epoch_checkpoint(self):
        """The path of the newest checkpoint of a completed epoch, or None."""
        step = self._newest_epoch_end(self.steps())
        return None if step is None else self.path(step)

    def restore(self, session):
        """Restores the newest readable checkpoint; returns its path, or None
        if there is none. Raises CheckpointMismatchError for another model's.
        Cleans what killed runs left (temporary files of a save)."""
        self._clean_leftovers()
        steps = self.steps()
        if not steps:
            return None
        signed = self._check_signature()
        for step in reversed(steps):
            path = self.path(step)
            try:
                shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
                self._check_variables(path, shapes, exact=not signed)
                with self._graph.as_default():
                    self.saver.restore(session, path)
            except (tf.errors.OpError, ValueError) as error:
                log.warning("checkpoint %s cannot be read (%s); moved to "
                            "%s/, trying the one before", path,
                            first_line(error), DAMAGED_DIR)
                self._move_damaged(step)
                continue
            log.info("restored checkpoint %s", path)
            self.latest = path
            return path
        log.warning("no readable checkpoint in %s: starting afresh",
                    self.model_dir)
        return None

    def _move_damaged(self, step):
        damaged = os.path.join(self.model_dir, DAMAGED_DIR)
        os.makedirs(damaged, exist_ok=True)
        for name in _files_of(self.model_dir, step):
            target, copies = os.path.join(damaged, name), 0
            while os.path.exists(target):  # damaged before: keep both
                copies += 1
                target = os.path.join(damaged, f"{name}.{copies}")
            os.replace(os.path.join(self.model_dir, name), target)

    def _clean_leftovers(self):
        if not os.path.isdir(self.model_dir):
            return
        for name in os.listdir(self.model_dir):
            if ((name.startswith(PREFIX) and (".tempstate" in name
                                              or "_temp" in name))
                    or (name.startswith(".") and ".tmp" in name)):
                path = os.path.join(self.model_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)

    @staticmethod
    def recorded(model_dir, field):
        """`field` of the model.json in `model_dir`, or None (no model_dir,
        no model.json, an unreadable one, or one without it)."""
        saved = read_json(os.path.join(model_dir, SIGNATURE_FILE)
                          ) if model_dir else None
        return saved.get(field) if isinstance(saved, dict) else None

    def _check_signature(self):
        """Compares model.json with our signature; returns whether it could
        (False: missing or unreadable, the variables must decide)."""
        path = os.path.join(self.model_dir, SIGNATURE_FILE)
        saved = read_json(path)
        if not isinstance(saved, dict):  # missing or unreadable: the
            # variables will tell
            log.warning("%s is missing or unreadable: checking the "
                        "checkpoints' variables instead", path)
            return False
        # JSON turns tuples into lists: compare in JSON form. What an
        # earlier version did not record (LATER_FIELDS) cannot be checked.
        ours = json.loads(json.dumps(self.signature))
        if str(saved.get("dataset")).startswith(("folder (", "tfrecord (")):
            # An earlier version named a files dataset with its sizes
            # ("folder (30 training images, 3 classes)"): by its format.
            saved["dataset"] = saved["dataset"].split(" (")[0]
        differences = json_differences(saved, {
            key: value for key, value in ours.items()
            if key in saved or key not in LATER_FIELDS})
        if differences:
            raise CheckpointMismatchError(
                f"{self.model_dir} holds checkpoints of another model "
                f"({_list(differences)}): choose another model_dir")
        return True

    def _check_variables(self, path, shapes, exact=False):
        """Every variable of ours there, in its shape; `exact`: and none
        more (without model.json, a model with a subset of another's
        variables would restore silently)."""
        differences = [f"{name} there only"
                       for name in sorted(set(shapes) - set(self._variables))
                       ] if exact else []
        for name, var in self._variables.items():
            if name not in shapes:
                differences.append(f"{name} missing")
            elif list(shapes[name]) != var.shape.as_list():
                differences.append(f"{name} is {shapes[name]} there, "
                                   f"{var.shape.as_list()} here")
        if differences:
            raise CheckpointMismatchError(
                f"checkpoint {path} is of another model "
                f"({_list(differences, 3)}): choose another model_dir")

    def check_run(self, arguments, allow_changes=False, frozen=()):
        """Records the training `arguments` (a JSON-able dict) in `run.json`.
        If the directory holds checkpoints trained with other arguments,
        raises RunChangedError naming the differences, unless
        `allow_changes` (then logs them); the `frozen` arguments may not
        change even then."""
        path = os.path.join(self.model_dir, RUN_FILE)
        saved = read_json(path)
        arguments = json.loads(json.dumps(arguments))
        if not isinstance(saved, dict):
            if self.steps() and not allow_changes:
                raise RunChangedError(
                    f"{path} is missing or unreadable: the arguments the "
                    f"checkpoints of {self.model_dir} were trained with "
                    f"cannot be checked; resume with the same ones and allow "
                    f"it (allow_changes=True, --allow-changes), or choose "
                    f"another model_dir")
            saved = None
        differences = []
        if saved is not None and self.steps():
            # What an earlier version did not record cannot be checked.
            unrecorded = sorted(set(arguments) - set(saved))
            if unrecorded:
                log.info("%s records no %s (an earlier version's): not "
                         "checked", path, ", ".join(unrecorded))
            differences = json_differences(saved, {
                key: value for key, value in arguments.items()
                if key in saved})
        for name in frozen:
            if saved is not None and saved.get(name) != arguments.get(name):
                raise RunChangedError(
                    f"{self.model_dir} is mid-epoch with {name} "
                    f"{saved.get(name)}: resume with it until the epoch ends "
                    f"(its position is counted in batches), or choose "
                    f"another model_dir")
        if differences and not allow_changes:
            raise RunChangedError(
                f"{self.model_dir} was trained with other arguments "
                f"({_list(differences)}): resume with the same ones, allow "
                f"the changes (allow_changes=True, --allow-changes) or "
                f"choose another model_dir")
        if differences:
            log.warning("resuming %s with changed arguments: %s",
                        self.model_dir, _list(differences, len(differences)))
        if saved != arguments:
            with self._writing(path):
                write_json(path, arguments)
        return differences


def _files_of(model_dir, step):
    """The names of the files of the checkpoint of `step`."""
    stem = f"{PREFIX}-{step}."
    return [name for name in os.listdir(model_dir)
            if name.startswith(stem) and (name == stem + "index"
                                          or name.startswith(stem + "data-"))]


def _step_of(path):
    return int(path.rsplit("-", 1)[1])


def _list(items, limit=4):
    return "; ".join(items[:limit]) + ("; ..." if len(items) > limit else "")
