"""Where a data-parallel run's workers are: `Cluster`, from command-line
flags or from `TF_CONFIG` as the rest of the TensorFlow ecosystem sets it.

Every worker runs the same program with its own task index; task 0, the
chief, writes the checkpoints and summaries. TensorFlow's own runtime
(`tf.distribute.Server`, gRPC, collective all-reduce) carries the traffic.

Typical use:
    cluster = Cluster(("10.0.0.1:2222", "10.0.0.2:2222"), task_index=0)
    cluster = Cluster.from_tf_config()      # or None outside a cluster
"""
import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import threading
import time

from batch_renorm.tensorflow_quiet import tf

from resnet.errors import PeersNotReady, WorkerLost

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

JOB = "worker"
COLLECTIVE_TIMEOUT = 60.0  # seconds a training step waits for a peer
START_TIMEOUT = 600.0      # seconds the first broadcast waits for all workers
# What a collective op raises when a peer is gone or silent.
LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
        tf.errors.AbortedError, tf.errors.CancelledError)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """`workers`: "host:port" of every task, in task order; `task_index`:
    this process's. `timeout`: seconds before a training step waiting for a
    dead or stuck peer fails; `start_timeout`: how long the start waits for
    every worker to come."""
    workers: tuple
    task_index: int
    timeout: float = COLLECTIVE_TIMEOUT
    start_timeout: float = START_TIMEOUT

    def __post_init__(self):
        if isinstance(self.workers, str) or not all(
                isinstance(a, str) for a in self.workers):
            raise ValueError(f"workers must be a list of \"host:port\" "
                             f"strings, got {self.workers!r}")
        object.__setattr__(self, "workers", tuple(self.workers))
        if not self.workers:
            raise ValueError("a cluster needs at least one worker")
        places = [_check_address(address) for address in self.workers]
        duplicates = sorted({a for a, place in zip(self.workers, places)
                             if places.count(place) > 1})
        if duplicates:
            raise ValueError(f"worker hosts must differ: {', '.join(duplicates)} "
                             f"name the same place")
        if not (isinstance(self.task_index, int)
                and 0 <= self.task_index < len(self.workers)):
            raise ValueError(f"task index must be in [0, {len(self.workers) - 1}] "
                             f"for {len(self.workers)} workers, got "
                             f"{self.task_index!r}")
        if not (self.timeout > 0 and self.start_timeout > 0):
            raise ValueError(f"timeouts must be > 0 seconds, got "
                             f"{self.timeout}, {self.start_timeout}")

    @property
    def size(self):
        return len(self.workers)

    @property
    def is_chief(self):
        return self.task_index == 0

    @property
    def device(self):
        """This task's CPU, where its graph is placed."""
        return f"/job:{JOB}/replica:0/task:{self.task_index}/device:CPU:0"

    @classmethod
    def parse(cls, hosts, task_index):
        """From `--worker-hosts h1:p1,h2:p2` and `--task-index I`."""
        return cls(tuple(h.strip() for h in hosts.split(",")), task_index)

    @classmethod
    def from_tf_config(cls, text=None):
        """From TF_CONFIG (`{"cluster": {"worker": [...]}, "task": {"type":
        "worker", "index": I}}`); None if it is unset."""
        text = os.environ.get("TF_CONFIG") if text is None else text
        if not text:
            return None
        try:
            config = json.loads(text)
            workers = config["cluster"][JOB]
            task = config["task"]
            if not isinstance(task, dict):
                raise TypeError("task is no object")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": "
                             f"[...]}}, \"task\": {{\"type\": \"worker\", "
                             f"\"index\": I}}}}, got {text!r} ({error})") from None
        if task.get("type") != JOB:
            raise ValueError(f"TF_CONFIG: only worker tasks are supported "
                             f"(all-reduce, no parameter servers), got "
                             f"{task.get('type')!r}")
        return cls(workers, task.get("index"))

    def session_config(self, config):
        """`config` (a ConfigProto) for a session of this task: collectives
        led by task 0, and this task's devices only in its graph."""
        config = _copy(config)
        config.experimental.collective_group_leader = (
            f"/job:{JOB}/replica:0/task:0")
        del config.device_filters[:]
        config.device_filters.append(f"/job:{JOB}/task:{self.task_index}")
        return config

    def start_server(self, config):
        """Starts this task's `tf.distribute.Server`; raises ValueError when
        its port cannot be bound."""
        host, port = self.workers[self.task_index].rsplit(":", 1)
        check_port_free(host, int(port))
        return tf.distribute.Server(
            tf.train.ClusterSpec({JOB: list(self.workers)}), job_name=JOB,
            task_index=self.task_index, config=self.session_config(config),
            start=True)


def worker_lost(error, cluster):
    """A `WorkerLost` naming the peer that `error` (one of LOST) names."""
    tasks = sorted({int(task) for task in re.findall(
        rf"/job:{JOB}/replica:\d+/task:(\d+)", str(error))}
        - {cluster.task_index})
    tasks = [t for t in tasks if t < cluster.size]
    who = (", ".join(f"worker {t} ({cluster.workers[t]})" for t in tasks)
           or "another worker")
    return WorkerLost(
        f"worker {cluster.task_index} lost {who}: {type(error).__name__}"
        f"{' (no answer in time)' if isinstance(error, tf.errors.DeadlineExceededError) else ''}"
        f"; start every worker again to resume from the chief's last "
        f"checkpoint")


@contextlib.contextmanager
def lost_workers(cluster):
    """Within the block, a collective op's failure (one of LOST) is raised
    as one `WorkerLost` naming the peer (`worker_lost`); without a
    `cluster`, as it came."""
    try:
        yield
    except LOST as error:
        if not cluster:
            raise
        raise worker_lost(error, cluster) from None


def run_in_time(function, seconds, message, waiting_for, say_every=30.0):
    """Returns `function()`, run in a thread while this one waits, saying
    every `say_every` seconds that it waits for `waiting_for`. If it is not
    done within `seconds`, or at Ctrl-C, raises `PeersNotReady` with
    `message` (exit code 1) or with exit code 130: the thread stays blocked,
    in gRPC's reconnection loop (where a worker whose peers never came
    waits, which no op or run timeout ends and which holds off Python's
    signal handlers in the calling thread), so the process should end."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    start = time.monotonic()
    said = start - say_every  # said at once, then every say_every seconds
    try:
        while thread.is_alive():
            now = time.monotonic()
            if now > start + seconds:
                raise PeersNotReady(message)
            if now - said >= say_every:
                log.info("waiting for %s (%.0f s of at most %.0f)",
                         waiting_for, now - start, seconds)
                said = now
            thread.join(0.2)
    except KeyboardInterrupt:
        raise PeersNotReady("interrupted while waiting for the other "
                            "workers", exit_code=130) from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _check_address(address):
    """Raises ValueError unless `address` is host:port (an IPv6 host in
    brackets); returns (host, port) as a comparable place."""
    host, colon, port = address.rpartition(":")
    if not (colon and host and port.isascii() and port.isdigit()
            and 0 < int(port) < 65536) or any(c.isspace() for c in address):
        raise ValueError(f"worker host must be host:port with a port in "
                         f"1..65535, got {address!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"an IPv6 worker host goes in brackets, e.g. "
                         f"[::1]:2222, got {address!r}")
    host = host.lower()
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def check_port_free(host, port):
    """Raises ValueError if this machine cannot listen on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port} ({error.strerror})"
                             f": is another worker there?") from None


def free_ports(count, host="127.0.0.1"):
    """`count` ports on `host` that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _copy(config):
    copy = tf1.ConfigProto()
    copy.CopyFrom(config)
    return copy
