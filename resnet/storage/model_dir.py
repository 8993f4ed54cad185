"""A model directory as a whole: whether a run can write there, and the
lock that lets one run at a time use it."""
import fcntl
import os

from resnet.errors import ModelDirInUseError
from resnet.storage.atomic import check_writable_dir

LOCK_FILE = ".lock"


def check_model_dir(model_dir):
    """Raises ValueError unless `model_dir` is None or a directory that can
    be created or written to."""
    if model_dir is not None:
        check_writable_dir(model_dir, "model_dir")


class DirectoryLock:
    """An exclusive lock on a model directory (or any output folder: `what`
    names it in the error), held until `release` (or the process's end: a
    killed run's lock is free at once). Raises ModelDirInUseError, naming
    the holder's pid, if another run holds it."""

    def __init__(self, model_dir, what="model_dir"):
        os.makedirs(model_dir, exist_ok=True)
        self._file = open(os.path.join(model_dir, LOCK_FILE), "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            if holder == str(os.getpid()):  # a notebook cell run again
                raise ModelDirInUseError(
                    f"{model_dir} is in use by an earlier object in this "
                    f"process (a ConvolutionNN or experiment still alive): "
                    f"close() it or del it first, or choose another "
                    f"{what}") from None
            raise ModelDirInUseError(
                f"{model_dir} is in use by another run (pid {holder}); wait "
                f"for it to end or choose another {what}") from None
        self._file.truncate(0)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self):
        if not self._file.closed:
            self._file.close()  # closing the file releases the lock
