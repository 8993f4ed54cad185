"""Checks of the directories a run writes to."""
import os


def check_writable_dir(path, what):
    """Raises ValueError unless `path` is, or can be made, a writable
    directory; `what` names it in the message (e.g. "model_dir")."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path, got {path!r}")
    existing = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {existing} is not writable")
