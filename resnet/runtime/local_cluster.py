"""`resnet-run --local-workers N`: N workers of one run on this machine.

Starts N `resnet-run` processes with the same arguments on 127.0.0.1 and
free ports, task 0 (the chief) on this terminal, the others quiet; waits
for the chief, then for the others; returns the first failure's exit
status, and prints the last line of each other worker that failed.
Ctrl-C reaches every worker from the terminal and SIGTERM is
passed on to the chief (it saves a checkpoint and stops; the others then
stop); a launcher killed outright sends the chief SIGTERM (the same).
The workers' cores are shared out among them.
"""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile

from resnet.runtime.cluster import free_ports
from resnet.runtime.session_config import usable_cores

STOP_GRACE = 30  # seconds the other workers get to end after the chief
PR_SET_PDEATHSIG = 1  # prctl(2): a signal for when the parent dies
LAUNCHER_ENV = "RESNET_RUN_LAUNCHER_PID"  # the chief's launcher


def check_local_workers(count, cluster_flags=False):
    """Raises ValueError unless `count` workers can start here: at least 1,
    at most the cores this process may use (each is a TensorFlow process;
    more only wait on one another), and no cluster flags beside
    (`cluster_flags`)."""
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"--local-workers must be >= 1, got {count}")
    cores = usable_cores()
    if count > cores:
        raise ValueError(f"--local-workers {count}: this machine gives this "
                         f"process {cores} cores, so at most {cores} workers "
                         f"(more than that: --worker-hosts on several "
                         f"machines)")
    if cluster_flags:
        raise ValueError("--local-workers makes its own cluster: leave out "
                         "--worker-hosts and --task-index")


def run_local_workers(count, argv):
    """Runs `count` workers of `resnet-run argv` (argv holding
    --local-workers, checked by `check_local_workers`); returns an exit
    status."""
    argv = _without_local_workers(argv)
    if not any(a == "--intra-threads" or a.startswith("--intra-threads=")
               for a in argv):
        argv += ["--intra-threads", str(max(1, usable_cores() // count))]
    hosts = ",".join(f"127.0.0.1:{port}" for port in free_ports(count))
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    logs, workers = [], []
    # Ctrl-C reaches the workers from the terminal; SIGTERM is passed on to
    # the chief, which saves and stops (the others then stop: they lose it).
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(
                    signal.SIGTERM,
                    lambda *_: workers and workers[0].send_signal(
                        signal.SIGTERM))}
    try:
        for task in range(count):
            command = [sys.executable, "-m", "resnet.resnet_run", *argv,
                       "--worker-hosts", hosts, "--task-index", str(task)]
            if task:
                log = tempfile.TemporaryFile("w+")
                logs.append(log)
                command.append("--no-progress")
            workers.append(subprocess.Popen(
                command, env=dict(env, **{LAUNCHER_ENV: str(os.getpid())})
                if task == 0 else env, stdout=None if task == 0 else log,
                stderr=None if task == 0 else log,
                preexec_fn=_default_signals))
        codes = [workers[0].wait()]
        for worker in workers[1:]:
            try:
                # Without the chief the others cannot go on: a short wait.
                codes.append(worker.wait(timeout=STOP_GRACE if codes[0] == 0
                                         else 5))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    if codes[0] < 0:
        print(f"resnet-run: worker 0 (the chief) was killed by "
              f"{signal.Signals(-codes[0]).name}", file=sys.stderr)
    # A worker's own failure (an image it read that does not decode, say)
    # is often why the chief stopped: shown whatever the chief's status,
    # but for what the chief's failure caused (a lost chief, a kill here).
    failed = []
    for task, (code, log) in enumerate(zip(codes[1:], logs), start=1):
        log.seek(0)
        lines = log.read().strip().splitlines() or ["(no output)"]
        last = lines[-1].removeprefix("resnet-run: ")
        if code and (codes[0] == 0 or code > 0 and "lost worker" not in last):
            failed.append(code)
            print(f"resnet-run: worker {task} failed: {last}",
                  file=sys.stderr)
    if codes[0]:
        return 128 - codes[0] if codes[0] < 0 else codes[0]
    return failed[0] if failed else 0


def _default_signals():
    """In a worker: Ctrl-C and SIGTERM act as they do in a lone run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def follow_launcher():
    """In the chief of `run_local_workers` (LAUNCHER_ENV names the
    launcher's pid), before anything else: the launcher's death (SIGKILL
    included) sends it SIGTERM, so that it saves and stops instead of
    training on, orphaned; the others then stop, having lost it (Linux;
    elsewhere nothing)."""
    launcher = os.environ.pop(LAUNCHER_ENV, None)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(launcher):  # it died before that
        os.kill(os.getpid(), signal.SIGTERM)


def _without_local_workers(argv):
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--local-workers":
            skip = True
        elif not arg.startswith("--local-workers="):
            kept.append(arg)
    return kept
