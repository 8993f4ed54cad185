"""The project's errors, by whose fault they are and how a run ends.

    Error
    ├── UsageError (also a ValueError)  the caller's mistake          exit 2
    │   └── DatasetError                dataset files missing or bad
    ├── ModelDirError                   a model directory this run    exit 2
    │   ├── ModelDirInUseError          cannot use
    │   ├── CheckpointMismatchError
    │   └── RunChangedError
    ├── TrainingFailed (a RuntimeError) the run broke off             exit 1
    │   ├── CheckpointSaveError
    │   ├── TrainingDiverged
    │   └── WorkerLost
    │       └── PeersNotReady
    └── TrainingInterrupted             SIGINT or SIGTERM     exit 128 + signal

Library code raises them and never ends the process; `resnet-run` maps each
base class to its exit status (`exit_status`). Arguments are checked where
they enter and a bad one is a `ValueError` (`UsageError` where the check is
ours), so `except ValueError` keeps catching them.

TensorFlow-free: `import resnet.errors` starts nothing.
"""


class Error(Exception):
    """Every error this project raises on purpose."""


class UsageError(Error, ValueError):
    """An argument, file or combination no run can use: the caller's to
    change."""


class DatasetError(UsageError):
    """A dataset file is missing, damaged, or not what was expected."""


class ModelDirError(Error):
    """The model directory cannot be used by this run (as it is now)."""


class ModelDirInUseError(ModelDirError):
    """Another run holds the model directory."""


class CheckpointMismatchError(ModelDirError):
    """The model directory holds checkpoints of another model."""


class RunChangedError(ModelDirError):
    """A resumed run's training arguments differ from the ones its
    checkpoints were trained with."""


class TrainingFailed(Error, RuntimeError):
    """Training broke off; the checkpoints before it are intact."""


class CheckpointSaveError(TrainingFailed):
    """A checkpoint or record could not be written (e.g. the disk is full)."""


class TrainingDiverged(TrainingFailed):
    """The loss (or a saved variable) stopped being finite; nothing was
    saved after it."""


class WorkerLost(TrainingFailed):
    """A peer died, hung or never came: the collective ops stopped."""


class PeersNotReady(WorkerLost):
    """The other workers did not answer at the start (or the wait was
    interrupted): a thread of this process stays blocked in gRPC, so the
    process cannot train again and should end (`resnet-run` ends it at once
    with `exit_code`)."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class ExportError(Error):
    """A SavedModel could not be written (e.g. the disk is full); an
    earlier export at its path is intact."""


class TrainingInterrupted(Error):
    """SIGINT or SIGTERM stopped training after a step, and a checkpoint of
    that step was saved. `exit_code` is 128 + the signal's number."""

    def __init__(self, message, signal):
        super().__init__(message)
        self.signal = signal
        self.exit_code = 128 + int(signal)


def exit_status(error):
    """The command line's exit status for `error`: 2 for the caller's
    mistakes and unusable model directories, 128 + the signal for an
    interruption, 1 for any other failure."""
    if isinstance(error, (ValueError, ModelDirError)):
        return 2
    if isinstance(error, (TrainingInterrupted, PeersNotReady)):
        return error.exit_code
    return 1
