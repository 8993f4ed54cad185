"""Data-parallel training on two worker processes on 127.0.0.1, against
our own one-process runs as the oracle (tests/distributed_worker.py trains
ResNet-8 with r and d active from the first step on 1024 digits)."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from resnet import models
from resnet.runtime.cluster import Cluster, free_ports
from batch_renorm.cpu import cpu_flags
from resnet.runtime.session_config import onednn_enabled
from resnet.convolution_nn import ConvolutionNN
from resnet.data.input_pipeline import (batches_per_epoch, check_batches,
                                        epoch_indices, trim_unit)
from tests.conftest import (CPP_LOG_LINE, assert_usage_error, cli_refuses,
                            run, start, wait_for_line)

pytestmark = [pytest.mark.distributed, pytest.mark.subprocess,
              pytest.mark.slow]

# 2 epochs of 4 global batches of 256: each worker normalises 128.
# oneDNN's AVX-512 kernels sum a worker's slice and one process's whole
# batch alike; its AVX2 kernels and TensorFlow's own sum them in another
# order.
# Where one process's microbatches and the workers' slices sum in the same
# order (measured: oneDNN on a Xeon with AMX), so that the two agree to
# rounding; elsewhere (TensorFlow's kernels, oneDNN's AVX2 ones, and its
# AVX-512 ones on an AMD EPYC: 4.6e-3 apart) they agree to a share of
# how far training moved the weights.
ONEDNN_SAME_ORDER = onednn_enabled() and "amx_bf16" in cpu_flags()
STEPS = ["--batch-size", "256", "--epochs", "2"]


def start_worker(out, workers, task, *args):
    return start("-m", "tests.distributed_worker", str(out), "--workers",
                 workers, "--task", str(task), *args)


def hosts():
    return ",".join(f"127.0.0.1:{port}" for port in free_ports(2))


def run_pair(tmp_path, name, *args):
    """Both workers to the end; returns their variables, with the train
    history each reported under "history"."""
    workers = hosts()
    pair = [start_worker(tmp_path / f"{name}{task}", workers, task, *args)
            for task in (0, 1)]
    results = []
    for task, process in enumerate(pair):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        results.append(dict(load(tmp_path / f"{name}{task}.npz"),
                            history=history(stdout)))
    return results


def run_one(tmp_path, name, *args):
    result = run("-m", "tests.distributed_worker", str(tmp_path / name), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(load(tmp_path / f"{name}.npz"), history=history(result.stdout))


def history(stdout):
    return json.loads(stdout.strip().splitlines()[-1])["history"]


def load(path):
    with np.load(path) as data:
        return {key.replace("|", "/"): data[key] for key in data.files}


def max_difference(a, b, keys=None):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k])))
               for k in keys or a if k != "history")


def weights(variables):
    """The names of the floating-point weights and moving statistics."""
    return [k for k, v in variables.items()
            if k != "history" and v.dtype.kind == "f" and "Momentum" not in k]


@pytest.fixture(scope="module")
def renorm_pair(tmp_path_factory):
    """Per-worker statistics, checkpoints by the chief every 2 steps."""
    path = tmp_path_factory.mktemp("renorm_pair")
    weights = run_pair(path, "w", *STEPS, "--model-dir", str(path / "run"),
                       "--checkpoint-steps", "2")
    return path, weights


def test_per_worker_statistics_are_microbatches_of_one_process(
        tmp_path, renorm_pair):
    chief, worker = renorm_pair[1]
    oracle = run_one(tmp_path, "one", *STEPS, "--microbatch", "128")
    assert max_difference(chief, worker) == 0.0  # every variable, bitwise
    assert chief["global_step"] == 8
    if ONEDNN_SAME_ORDER:
        assert max_difference(chief, oracle) < 1e-5
    else:
        # TensorFlow's own kernels, and oneDNN's AVX2 ones, sum a worker's
        # 64 images and one process's 128 in another order: 9e-4 apart
        # (Eigen) and 4e-3 (oneDNN, AVX2 EPYC), as batch norm's gradients
        # amplify rounding (the test below): 1.2% of the move at most.
        assert_moved_alike(chief, oracle, load(tmp_path / "one-start.npz"))
    # Both report the global batch's training loss and accuracy (over the
    # 4 x 256 images of a history point: 2e-3 is two images).
    loss, accuracy = (1e-5, 1e-6) if ONEDNN_SAME_ORDER else (1e-4, 2e-3)
    for got, want in zip(chief["history"], oracle["history"]):
        assert got["step"] == want["step"] and got["batches"] == 4
        assert got["loss"] == pytest.approx(want["loss"], rel=loss)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=accuracy)


def test_batch_norm_per_worker_is_microbatches_of_one_process(tmp_path):
    """Batch norm's gradients through a norm that follows a norm are sums
    of terms that nearly cancel: float32 order changes them by ~1e-3 of
    their size (one process, fused vs unfused, shows the same). So the
    weights must match to 1% of how far training moved them (3% with
    oneDNN's AVX2 kernels); a wrong average, slice or update would be of
    the order of the move itself."""
    chief, worker = run_pair(tmp_path, "w", *STEPS, "--norm", "batch_norm")
    oracle = run_one(tmp_path, "one", *STEPS, "--norm", "batch_norm",
                     "--microbatch", "128")
    assert max_difference(chief, worker) == 0.0
    assert_moved_alike(chief, oracle, load(tmp_path / "one-start.npz"))


def assert_moved_alike(got, want, start, share=None):
    """Every weight and moving statistic of `got` within `share` of how far
    training moved it from `start` in `want`; by default 1%, 3% with
    oneDNN's AVX2 kernels (1.2-1.3% measured on the AVX2 EPYC)."""
    if share is None:
        share = 0.03 if onednn_enabled() and not ONEDNN_SAME_ORDER else 0.01
    for key in weights(want):
        moved = np.max(np.abs(want[key] - start[key]))
        assert np.max(np.abs(got[key] - want[key])) <= share * moved, key


def test_synchronized_statistics_are_the_whole_batch(tmp_path):
    chief, worker = run_pair(tmp_path, "s", *STEPS, "--sync-statistics")
    oracle = run_one(tmp_path, "one", *STEPS)
    assert max_difference(chief, worker) == 0.0
    # Unfused (the fused kernel has no gradient for moments passed in)
    # against the fused full batch: float32 order, as for batch norm. Its
    # effect after these 14 steps depends on which rounding each side
    # takes: measured 0.4% to 1.2% of the move (one process alone moved by
    # 1.2% when its normalisation went from a second training-mode kernel
    # to the inference-mode one, the same formula).
    assert_moved_alike(chief, oracle, load(tmp_path / "one-start.npz"),
                       share=0.03)


def test_the_chiefs_checkpoint_is_the_model_in_one_process(digits, renorm_pair):
    path, (chief, _) = renorm_pair
    network = models.resnet(8, 10, norm="batch_renorm", norm_momentum=0.9)
    with ConvolutionNN(network, digits, model_dir=str(path / "run"),
                       progress=False) as cnn:
        assert cnn.session.run(cnn.global_step) == 8
        restored = {v.op.name: v for v in cnn.graph.get_collection("variables")}
        for name in ("resnet8/03_block/conv1/batch_renorm/moving_std",
                     "resnet8/logits/kernel"):
            np.testing.assert_array_equal(cnn.session.run(restored[name]),
                                          chief[name])


def test_sigkill_of_the_cluster_then_resume(tmp_path, renorm_pair):
    workers = hosts()
    args = (*STEPS, "--model-dir", str(tmp_path / "run"),
            "--checkpoint-steps", "2", "--step-sleep", "0.3")
    pair = [start_worker(tmp_path / f"k{task}", workers, task, *args)
            for task in (0, 1)]
    wait_for_line(pair[0], "saved checkpoint")
    for process in pair:
        process.kill()
        process.wait()
    assert not (tmp_path / "k0.npz").exists()  # it did not finish
    chief, worker = run_pair(tmp_path, "r", *args)
    assert max_difference(chief, renorm_pair[1][0]) == 0.0
    assert max_difference(chief, worker) == 0.0


def test_a_lost_worker_stops_the_other_with_one_line(tmp_path):
    workers = hosts()
    common = ["-m", "resnet.resnet_run", "--depth", "8", "--epochs", "20",
              "--batch-size", "32", "--no-progress", "--worker-hosts",
              workers, "--collective-timeout", "10", "--checkpoint-steps", "5"]
    chief = start(*common, "--task-index", "0", "--model-dir", str(tmp_path),
                  stdout=None, TF_CPP_MIN_LOG_LEVEL=None)
    worker = start(*common, "--task-index", "1", stdout=None,
                   stderr=subprocess.DEVNULL)
    wait_for_line(chief, "saved checkpoint")
    worker.send_signal(signal.SIGKILL)
    _, stderr = chief.communicate(timeout=60)
    assert chief.returncode == 1
    last = stderr.strip().splitlines()[-1]
    port = workers.split(",")[1]
    assert last.startswith(f"resnet-run: worker 0 lost worker 1 ({port})"), stderr
    assert "start every worker again" in last and "Traceback" not in stderr
    # No C++ lines (gRPC's errors came before it).
    assert not CPP_LOG_LINE.search(stderr), stderr


@pytest.mark.parametrize("args, message", [
    (["--worker-hosts", "127.0.0.1:1,127.0.0.1:2", "--task-index", "2"],
     "task index must be in [0, 1]"),
    (["--worker-hosts", "127.0.0.1,127.0.0.1:2", "--task-index", "0"],
     "worker host must be host:port"),
    (["--worker-hosts", "127.0.0.1:5,127.0.0.1:5", "--task-index", "0"],
     "name the same place"),
    (["--worker-hosts", "127.0.0.1:5,127.0.0.1:6", "--task-index", "0",
      "--batch-size", "33"], "must be a multiple of the 2 workers"),
    (["--worker-hosts", "127.0.0.1:5"], "go together"),
    (["--worker-hosts", "::1:5610,::1:5611", "--task-index", "0"],
     "IPv6 worker host goes in brackets"),
    (["--worker-hosts", "127.0.0.1:5000,localhost:05000", "--task-index", "0"],
     "name the same place"),
    (["--sync-statistics"], "needs several workers"),
    (["--local-workers", "0"], "--local-workers must be >= 1"),
    (["--local-workers", "2", "--task-index", "0"], "makes its own cluster"),
    # Before any worker starts (100 TensorFlow processes did, on 2 cores).
    (["--local-workers", "100", "--batch-size", "200"], "so at most"),
    (["--local-workers", "2", "--batch-size", "33"],
     "must be a multiple of the 2 workers"),
    (["--local-workers", "2", "--rmax", "0.5"], "rmax must be a finite number"),
])
def test_bad_cluster_arguments(args, message, capsys):
    cli_refuses(args, message, capsys)


def test_a_port_in_use_and_a_bad_tf_config(capsys, monkeypatch):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli_refuses(["--worker-hosts", f"127.0.0.1:{port},127.0.0.1:1",
                     "--task-index", "0"],
                    f"cannot listen on 127.0.0.1:{port}", capsys)
    for garbage in ('{"cluster": {"ps": []}}',
                    '{"cluster": {"worker": ["a:1"]}, "task": "worker"}'):
        monkeypatch.setenv("TF_CONFIG", garbage)
        cli_refuses([], "TF_CONFIG", capsys)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": "a:1"}, '
                       '"task": {"type": "worker"}}')
    cli_refuses([], "workers must be a list", capsys)
    # The real process's exit: status 2 and the one line.
    assert_usage_error(run("-m", "resnet.resnet_run", TF_CONFIG=garbage),
                       "TF_CONFIG")
    cluster = Cluster.from_tf_config(
        '{"cluster": {"worker": ["a:1", "b:2"]}, '
        '"task": {"type": "worker", "index": 1}}')
    assert cluster == Cluster(("a:1", "b:2"), 1)


def test_local_workers_train_digits(tmp_path, capfd):
    result = run("-m", "resnet.resnet_run", "--local-workers", "2",
                 "--depth", "8", "--epochs", "3", "--no-progress",
                 "--model-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    # 1437 images: each epoch's last batch of 29 loses one to split in two.
    assert line.startswith("test accuracy ") and "after 69 steps" in line
    assert float(line.split()[2]) > 0.9
    assert (tmp_path / "model.ckpt-69.index").exists()
    # Each worker normalised its own slice: one process resuming computes
    # otherwise, as synchronized statistics would. Refused, in one line.
    for change, message in ((["--local-workers", "2", "--sync-statistics"],
                             "sync_statistics: False there, True here"),
                            ([], "workers: 2 there, 1 here")):
        # The schedules of the 69-step run, which a longer one would change.
        cli_refuses([*change, "--depth", "8", "--epochs", "4",
                     "--lr-boundaries", "34,51", "--renorm-warmup", "17",
                     "--rmax-steps", "34", "--dmax-steps", "34",
                     "--model-dir", str(tmp_path)], message, capfd)


def test_microbatches_must_divide_each_workers_slice():
    """Of a batch; an epoch's last batch is trimmed to whole microbatches
    for every worker: 1437 = 23 * 60 + 57, trimmed to 54 for 2 workers'
    groups of 3 (27 each), to 57 in one process."""
    check_batches(60, microbatch=3, parts=2)
    with pytest.raises(ValueError, match=r"batch_size \(60\) must give each "
                       r"of the 2 workers a multiple of 4"):
        check_batches(60, microbatch=4, parts=2)
    with pytest.raises(ValueError, match=r"batch_size \(60\) must be a "
                       r"multiple of 7"):
        check_batches(60, microbatch=7)
    labels = np.zeros(1437, np.int64)
    for unit, last in ((trim_unit(2, 3), 54), (trim_unit(1, 3), 57),
                       (trim_unit(1, 4), 56), (trim_unit(2), 56)):
        order = epoch_indices(0, 0, labels, 60, 0, unit)
        assert len(order) == 23 * 60 + last, unit
        assert len(set(order)) == len(order)
        assert batches_per_epoch(1437, 60, unit) == 24
    assert batches_per_epoch(1437, 60, 58) == 23  # nothing of 57 is left
    assert len(epoch_indices(0, 0, labels, 60, 0, 58)) == 23 * 60
    # Trimmed to nothing at all: 3 examples, groups of 4.
    with pytest.raises(ValueError, match=r"3 training examples make no "
                       r"batch: .* a multiple of 4 \(workers x microbatch\)"):
        check_batches(4, microbatch=4, train_size=3)


def test_waiting_for_the_other_workers_ends_at_ctrl_c(tmp_path):
    alone = start("-m", "resnet.resnet_run", "--depth", "8",
                  "--worker-hosts", hosts(), "--task-index", "0", stdout=None)
    # Started, and waiting for worker 1, which never comes: it says so.
    wait_for_line(alone, "waiting for the other workers of 127.0.0.1:")
    alone.send_signal(signal.SIGINT)
    _, stderr = alone.communicate(timeout=30)
    assert alone.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "resnet-run: interrupted while waiting for the other workers")


def test_a_killed_launcher_takes_its_workers_with_it(tmp_path):
    """SIGKILL of --local-workers left both workers training, orphaned:
    the chief gets SIGTERM and saves, the other loses it, both are gone."""
    launcher = start("-m", "resnet.resnet_run", "--local-workers", "2",
                     "--depth", "8", "--epochs", "30", "--no-progress",
                     "--checkpoint-steps", "10", "--model-dir", str(tmp_path),
                     stdout=None)
    wait_for_line(launcher, "saved checkpoint")
    with open(f"/proc/{launcher.pid}/task/{launcher.pid}/children") as f:
        workers = [int(pid) for pid in f.read().split()]
    assert len(workers) == 2
    launcher.kill()
    launcher.wait()

    def running(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                return "zombie" not in f.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(map(running, workers)):
        time.sleep(0.5)
    alive = [pid for pid in workers if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers trained on without their launcher"
    # The chief wrote to the launcher's stderr, which outlives it.
    stderr = launcher.stderr.read()
    assert "resnet-run: stopped by SIGTERM" in stderr, stderr


def test_sigterm_to_local_workers_saves_and_stops_them_all(tmp_path):
    launcher = start("-m", "resnet.resnet_run", "--local-workers", "2",
                     "--depth", "8", "--epochs", "30", "--no-progress",
                     "--checkpoint-steps", "10", "--model-dir", str(tmp_path),
                     stdout=None)
    wait_for_line(launcher, "saved checkpoint")
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "saved checkpoint" in stderr
    files = sorted(os.listdir(tmp_path))
    time.sleep(3)  # no worker left to write more
    assert sorted(os.listdir(tmp_path)) == files
