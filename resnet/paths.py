"""Checks of the directories a run writes to."""
import os
import tempfile


def check_writable_dir(path, what):
    """Raises ValueError unless `path` is, or can be made, a writable
    directory; `what` names it in the message (e.g. "model_dir"). It tries:
    permission bits say yes to root even under /proc or /sys."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{what} must be a path, got {path!r}")
    existing = deepest_existing(path)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {existing} is not writable")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
    except OSError as error:
        raise ValueError(f"{what} {path}: nothing can be created in "
                         f"{existing} ({error.strerror})") from None


def deepest_existing(path):
    """The deepest of `path` and its parents that exists (absolute)."""
    existing = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing
