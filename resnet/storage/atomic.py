"""Files a run writes: atomic writes, JSON records and their differences,
and checks of the directories it writes to."""
import errno
import json
import os
import shutil
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


def write_json(path, value, sort_keys=True):
    """Writes `value` as JSON to `path` atomically (`write_text`)."""
    write_text(path, json.dumps(value, indent=1, sort_keys=sort_keys))


def write_text(path, text):
    """Writes `text` to `path` atomically: a reader sees the old file or the
    new one, never a part (temporary file, fsync, rename)."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp{os.getpid()}")
    try:
        with open(temporary, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    descriptor = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path):
    """The JSON value in `path`, or None if it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def json_differences(there, here, path=""):
    """The fields in which two JSON values differ, each as one short
    'path: value there, value here'."""
    if isinstance(there, dict) and isinstance(here, dict):
        return [line for key in sorted(set(there) | set(here))
                for line in json_differences(there.get(key), here.get(key),
                                         f"{path}.{key}" if path else key)]
    if isinstance(there, list) and isinstance(here, list):
        if len(there) != len(here):
            return [f"{path}: {len(there)} items there, {len(here)} here"]
        return [line for index, (a, b) in enumerate(zip(there, here))
                for line in json_differences(a, b, f"{path}[{index}]")]
    if there == here:
        return []
    return [f"{path}: {_short(there)} there, {_short(here)} here"]


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failure_reason(error):
    """Why a write failed, in a few words ("no space left on device")."""
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or "No space left" in str(error):
        return "no space left on device"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return first_line(error).split(";")[0]


def free_space(directory):
    """The free space of `directory`'s file system, e.g. "12.5 MiB"."""
    try:
        usage = shutil.disk_usage(directory)
    except OSError:
        return "unknown space"
    return f"{usage.free / 2**20:.1f} MiB"


def first_line(error):
    """The first line of an error's message."""
    return str(error).strip().splitlines()[0]
