"""Faults: SIGKILL, SIGINT, SIGTERM, divergence, damaged checkpoints, bad
arguments. A run resumed after any of them must end as the uninterrupted
run does, bit for bit."""
import logging
import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from resnet import models
from resnet.errors import CheckpointMismatchError
from resnet.convolution_nn import ConvolutionNN
from resnet.errors import TrainingDiverged
from tests.conftest import (assert_same_weights,
                            cli_refuses, final_weights, run, start,
                            wait_for_line)

tf1 = tf.compat.v1

# digits, 3 epochs of 23 steps, a checkpoint every 5 steps and at epoch ends.
TRAIN = ["-m", "resnet.resnet_run", "--depth", "8", "--epochs", "3",
         "--batch-size", "64", "--dropout", "0.2", "--deterministic",
         "--checkpoint-steps", "5", "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(*TRAIN, "--model-dir", str(model_dir))
    assert result.returncode == 0, result.stderr
    weights = final_weights(model_dir)
    assert weights["global_step"] == 69
    return weights


def start_training(model_dir, *extra):
    return start(*TRAIN, *extra, "--model-dir", str(model_dir))


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", [
    "model.ckpt-10",   # mid-epoch
    "model.ckpt-23",   # at the end of the first epoch
    "model.ckpt-50"])  # mid-epoch, in the last epoch
def test_sigkill_then_resume_ends_with_the_same_weights(
        tmp_path, uninterrupted, checkpoint):
    process = start_training(tmp_path)
    wait_for_line(process, f"saved checkpoint {tmp_path}/{checkpoint}")
    process.kill()
    assert process.wait() == -signal.SIGKILL
    resumed = run(*TRAIN, "--model-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert "restored checkpoint" in resumed.stderr
    assert_same_weights(final_weights(tmp_path), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130),
                                          (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_and_exit(tmp_path, uninterrupted, signum, code):
    process = start_training(tmp_path)
    wait_for_line(process, "saved checkpoint")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"resnet-run: stopped by {signal.Signals(signum).name}")
    assert "run the same command again to resume" in last
    stopped_at = int(last.split(" at step ")[1].split(";")[0])
    assert f"model.ckpt-{stopped_at}" in last and stopped_at < 69
    resumed = run(*TRAIN, "--model-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(final_weights(tmp_path), uninterrupted)


SECOND_SIGNAL = """
import os, signal, threading, time
import tensorflow as tf
from resnet.train import signals
from resnet.train.signals import StopOnSignal
ending = signals.second_interrupt_ends_process()
if {command_line}:
    ending.__enter__()
tf1 = tf.compat.v1
graph = tf.Graph()
with graph.as_default():  # a step of ~5 s, inside TensorFlow throughout
    spin = tf.while_loop(lambda i: i < 10 ** 6, lambda i: i + 1, [0])

def twice():
    time.sleep(1.0)
    os.kill(os.getpid(), signal.{name})
    time.sleep(0.05)
    os.kill(os.getpid(), signal.{name})

with tf1.Session(graph=graph) as session:
    try:
        with StopOnSignal() as stop:
            threading.Thread(target=twice).start()
            session.run(spin)
            print("the step ended;", stop.received.name)
            time.sleep(0.5)  # the second's KeyboardInterrupt comes by then
        print("no KeyboardInterrupt")
    except KeyboardInterrupt:
        print("KeyboardInterrupt;", stop.received.name, flush=True)
    print("the session still runs:", int(session.run(spin)[0]))
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command_line", [False, True])
def test_a_second_sigint_raises_or_ends_the_command_line(name, command_line):
    """Two Ctrl-Cs 50 ms apart inside one long step (Python calls its
    handler once for both): in the interpreter (a notebook) the second
    raises KeyboardInterrupt once the step returns, the session intact
    (it ended the process and the kernel); a command line's ends the
    process then and there, 130. Two SIGTERMs (a scheduler's and our
    launcher's) are one request to save and stop."""
    result = run("-c", SECOND_SIGNAL.format(name=name,
                                            command_line=command_line))
    if name == "SIGTERM":
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "the step ended; SIGTERM", "no KeyboardInterrupt",
            "the session still runs: 1000000"]
    elif command_line:
        assert result.returncode == 130, result.stderr
        assert "the step ended" not in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "the step ended; SIGINT", "KeyboardInterrupt; SIGINT",
            "the session still runs: 1000000"], result.stdout


def test_two_interrupts_in_a_notebook_raise_and_keep_the_model(digits,
                                                               tmp_path):
    """A notebook's two interrupts during `cnn.train` with a model_dir
    (the kernel sends SIGINT to itself): KeyboardInterrupt, the interpreter
    and the model kept; training goes on from where it stopped."""
    class Interrupt(tf.compat.v1.train.SessionRunHook):
        def after_run(self, run_context, run_values):
            self.steps = getattr(self, "steps", 0) + 1
            if self.steps == 3:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the watcher thread reads both

    with ConvolutionNN(models.custom("conv:4", 10), digits, seed=0,
                       model_dir=str(tmp_path), progress=False) as cnn:
        with pytest.raises(KeyboardInterrupt) as raised:
            cnn.train(64, 1, hooks=[Interrupt()])
        # Raised once: no second KeyboardInterrupt while handling the first.
        assert raised.value.__context__ is None
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        step = int(cnn.session.run(cnn.global_step))
        assert 3 <= step <= 4
        cnn.train(64, 1)
        assert int(cnn.session.run(cnn.global_step)) > step


def test_ctrl_c_while_tensorflow_loads_is_one_line():
    """As when a process group's Ctrl-C meets --local-workers' chief
    starting: a 32-102-line KeyboardInterrupt traceback."""
    process = start("-m", "resnet.resnet_run", "--no-progress")
    time.sleep(1.0)  # importing TensorFlow takes seconds
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "resnet-run: interrupted"
    assert "Traceback" not in stderr, stderr


def test_a_second_sigint_after_the_run_stopped_is_no_traceback(tmp_path):
    process = start_training(tmp_path)
    wait_for_line(process, "saved checkpoint")
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    # 130 from us, or death by SIGINT once the save is reported (a shell
    # shows both as 130).
    assert process.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.slow
def test_rerunning_a_finished_run_trains_nothing_more(tmp_path):
    first = run(*TRAIN, "--epochs", "1", "--model-dir", str(tmp_path))
    assert first.returncode == 0 and "after 23 steps" in first.stdout
    again = run(*TRAIN, "--epochs", "1", "--model-dir", str(tmp_path))
    assert again.returncode == 0 and "after 23 steps" in again.stdout
    assert "all 1 epochs are done already" in again.stderr


def small(depth=8):
    return models.resnet(depth, 10, norm="batch_renorm")


@pytest.mark.slow
def test_divergence_stops_without_touching_the_last_checkpoint(tmp_path, digits):
    with ConvolutionNN(small(), digits, model_dir=str(tmp_path),
                       progress=False) as cnn:
        cnn.train(batch_size=128, num_epoch=1)
    good = final_weights(tmp_path)

    def checkpoint_files():  # each run adds its own TensorBoard events file
        return sorted(f for f in os.listdir(tmp_path) if "tfevents" not in f)

    files = checkpoint_files()
    with ConvolutionNN(small(), digits, learning_rate=1e30, allow_changes=True,
                       model_dir=str(tmp_path), progress=False) as cnn:
        with pytest.raises(TrainingDiverged,
                           match=r"at step 1[3-9].*model\.ckpt-12"):
            cnn.train(batch_size=128, num_epoch=1)
    assert checkpoint_files() == files
    assert_same_weights(final_weights(tmp_path), good)
    assert all(np.all(np.isfinite(v)) for v in good.values())


@pytest.mark.slow
def test_truncated_newest_checkpoint_falls_back_to_the_older(tmp_path, digits, caplog):
    caplog.set_level(logging.INFO)
    with ConvolutionNN(small(), digits, model_dir=str(tmp_path),
                       progress=False) as cnn:
        cnn.train(batch_size=128, num_epoch=2)  # checkpoints at 12 and 24
    data = tmp_path / "model.ckpt-24.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with ConvolutionNN(small(), digits, model_dir=str(tmp_path),
                       progress=False) as cnn:
        assert cnn.session.run(cnn.global_step) == 12
        assert cnn.epochs_done == 1
    assert "model.ckpt-24 cannot be" in caplog.text
    assert f"model_dir {tmp_path}: step 12, 1 epochs done" in caplog.text


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(tmp_path, digits):
    with ConvolutionNN(small(8), digits, model_dir=str(tmp_path),
                       progress=False) as cnn:
        cnn.train(batch_size=256, num_epoch=1)
    with pytest.raises(CheckpointMismatchError) as refused:
        ConvolutionNN(small(14), digits, model_dir=str(tmp_path))
    # Only the fields that differ, briefly (not the whole description).
    assert str(refused.value) == (
        f"{tmp_path} holds checkpoints of another model (network.layers: 4 "
        f"items there, 7 here; network.name: 'resnet8' there, 'resnet14' "
        f"here): choose another model_dir")
    # Without model.json, the variables themselves tell.
    os.remove(tmp_path / "model.json")
    wide = models.resnet(8, 10, norm="batch_renorm", base_filters=8)
    wide = type(wide)(wide.layers, 10, name="resnet8")
    with pytest.raises(CheckpointMismatchError,
                       match=r"resnet8/00_conv/kernel is \[3, 3, 1, 16\] there, "
                             r"\[3, 3, 1, 8\] here"):
        ConvolutionNN(wide, digits, model_dir=str(tmp_path))


BAD_ARGUMENTS = [  # (ConvolutionNN / train keyword, value, CLI flag, message)
    ("batch_size", 0, "--batch-size", "batch_size must be an integer >= 1"),
    ("num_epoch", -1, "--epochs", "num_epoch must be an integer >= 0"),
    ("learning_rate", 0.0, "--lr", "learning_rate must be a number > 0"),
    ("learning_rate", float("nan"), "--lr", "learning_rate must be a number > 0"),
    ("momentum", 1.0, "--momentum", "momentum must be a number >= 0.0 and < 1.0"),
    ("weight_decay", -1e-4, "--weight-decay", "weight_decay must be a number >= 0"),
    ("lr_boundaries", (30, 20), "--lr-boundaries", "lr_boundaries must be strictly increasing"),
    ("checkpoint_secs", float("nan"), "--checkpoint-secs",
     "checkpoint_secs must be a number > 0"),
    ("checkpoint_secs", -1.0, "--checkpoint-secs",
     "checkpoint_secs must be a number > 0"),
]


def tiny():
    """A network whose graph builds in a blink: argument checks need no
    depth."""
    return models.custom("conv:4", 10)


@pytest.mark.parametrize("keyword, value, flag, message", BAD_ARGUMENTS)
def test_bad_arguments_python_and_cli(digits, keyword, value, flag, message,
                                      capsys):
    if keyword in ("batch_size", "num_epoch"):
        with ConvolutionNN(tiny(), digits, progress=False) as cnn:
            with pytest.raises(ValueError, match=message):
                cnn.train(**dict(dict(batch_size=32, num_epoch=1),
                                 **{keyword: value}))
            assert cnn.session.run(cnn.global_step) == 0
    else:
        with pytest.raises(ValueError, match=message):
            ConvolutionNN(tiny(), digits, **{keyword: value})
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    cli_refuses([f"{flag}={text}"], message, capsys)


def test_model_dir_in_the_way_of_a_file(tmp_path, digits, capsys):
    (tmp_path / "file").write_text("x")
    path = str(tmp_path / "file" / "run")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        ConvolutionNN(tiny(), digits, model_dir=path)
    cli_refuses(["--model-dir", path], "is a file", capsys)


def test_unwritable_model_dir(tmp_path, digits, monkeypatch):
    # Root (as in CI) may write anywhere: fake what a user's os.access says.
    locked = str(tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False
                        if path == locked else real_access(path, mode))
    with pytest.raises(ValueError, match=f"{locked} is not writable"):
        ConvolutionNN(small(), digits, model_dir=os.path.join(locked, "run"))


def test_a_network_larger_than_the_machine_is_refused_before_building(capsys):
    cli_refuses(["--layers", "conv:99999999"], "network: 2,099,999,989 "
                "parameters, about 4608.9 GiB to train at batch 64, more "
                "than this machine's", capsys)


@pytest.mark.parametrize("args, message", [
    (["--dropout", "1.5"], "dropout_rate must be in [0, 1)"),
    (["--norm-momentum", "1"], "norm_momentum must be in [0, 1)"),
    (["--rmax", "0.5"], "rmax must be a finite number >= 1"),
    (["--rmax", "inf"], "rmax must be a finite number >= 1, got inf"),
    (["--dmax", "inf"], "dmax must be a finite number >= 0, got inf"),
    (["--depth", "9"], "6n + 2"),
    (["--intra-threads", "0"], "intra_threads must be an integer >= 1"),
    (["--intra-threads", "2147483648"], "intra_threads must be an integer "
     ">= 1 and <= 1024 or None, got 2147483648"),
    (["--inter-threads", "999999999999"], "inter_threads must be an integer"),
    (["--lr-boundaries", ",,,"], "expected comma-separated steps, got ',,,'"),
    (["--lr-boundaries", "5,5"], "lr_boundaries must be strictly increasing "
     "steps >= 0, got (5, 5)"),
    (["--layers", ""], "bad layer ''"),
    (["--layers", "conv:32:pool=avg:pool=max"], "option(s) ['pool'] given "
     "twice"),
    (["--data-format", "NCWH"], "invalid choice"),
    (["--layers", "conv:8,dense:16", "--batch-size", "1"],
     "groups of one example, whose variance is 0 (its output would be beta "
     "whatever its input): use a larger batch size"),
    (["--layers", "conv:8:strides=8", "--microbatch", "1"],  # a 1x1 map
     "use a larger microbatch"),
    # 1437 = 89 * 16 + 13 (microbatches of 1 on conv layers: no 1x1 map).
    (["--layers", "dense:16", "--batch-size", "1436"],
     "the epoch's last batch (1437 examples) leaves one example per worker"),
    (["--sync-statistics", "--microbatch", "4", "--local-workers", "2"],
     "sync_statistics (the global batch's moments) and the network's "
     "microbatch"),
    (["--sync-statistics", "--microbatch", "4", "--worker-hosts",
      "127.0.0.1:1,127.0.0.1:2", "--task-index", "0"], "exclude each other"),
    (["--classes-per-group", "16", "--group-size", "32", "--batch-size", "128"],
     "classes_per_group must be at most the data's 10 classes, got 16")])
def test_other_cli_arguments_are_checked_before_any_graph(args, message,
                                                          capsys):
    cli_refuses(args, message, capsys)


def test_bfloat16_is_refused_where_the_cpu_has_no_kernels(capsys,
                                                          monkeypatch):
    """An AVX2-only CPU (oneDNN limited to its kernels) failed at step 1
    with an AbortedError traceback; now one line, before any data."""
    from resnet.runtime.session_config import session_config
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    message = "precision bfloat16 needs a CPU with AVX-512"
    with pytest.raises(ValueError, match=message):
        session_config(precision="bfloat16")
    cli_refuses(["--precision", "bfloat16"], message, capsys)
    session_config(precision="auto")  # float32 there


def test_synchronized_statistics_and_microbatches_before_a_server(digits):
    """From Python it was a ValueError from the graph, after the cluster's
    server had started."""
    from resnet.runtime.cluster import Cluster
    cluster = Cluster(("127.0.0.1:1", "127.0.0.1:2"), 0)
    network = models.resnet(8, 10, microbatch=4)
    with pytest.raises(ValueError, match="sync_statistics .* and the "
                       "network's microbatch .* exclude each other"):
        ConvolutionNN(network, digits, cluster=cluster, sync_statistics=True)


def test_a_norm_of_single_values_is_refused_before_training(digits):
    """--batch-size 1 with a norm on a dense layer trained to test
    accuracy 0.0755 (loss 38975) without a word: the norm's output was
    beta. Convolutions on maps larger than 1x1 keep batches of one."""
    dense = models.custom("conv:8,dense:16", 10)
    assert dense.fewest_norm_positions((8, 8, 1)) == 1
    assert models.resnet(20, 10).fewest_norm_positions((8, 8, 1)) == 4
    with ConvolutionNN(dense, digits, progress=False) as cnn:
        with pytest.raises(ValueError, match="groups of one example"):
            cnn.train(1, 1)
        assert cnn.session.run(cnn.global_step) == 0


@pytest.mark.slow
def test_batches_that_microbatches_or_classes_cannot_divide(digits):
    network = models.resnet(8, 10, norm="batch_renorm", microbatch=4)
    with ConvolutionNN(network, digits, progress=False) as cnn:
        with pytest.raises(ValueError, match=r"batch_size \(30\) must be "
                           r"a multiple of 4"):
            cnn.train(batch_size=30, num_epoch=1)
        # 1437 = 22 * 64 + 29: the last batch is trimmed to 28 (it was
        # refused, at every batch size but multiples of 3 x 4 = 12 and
        # 1437's divisors; the grouped layer asserts whole groups).
        cnn.train(batch_size=64, num_epoch=1)
        assert cnn.session.run(cnn.global_step) == 23
    with ConvolutionNN(small(), digits, classes_per_group=3,
                       progress=False) as cnn:
        with pytest.raises(ValueError, match="multiple of classes_per_group"):
            cnn.train(batch_size=64, num_epoch=1)
    with ConvolutionNN(small(), digits, classes_per_group=2, group_size=6,
                       progress=False) as cnn:
        with pytest.raises(ValueError, match=r"multiple of group_size \(6\)"):
            cnn.train(batch_size=64, num_epoch=1)


def test_a_step_that_fails_leaves_the_global_step_with_the_weights(graph):
    """A step whose input fails (here a NaN that check_numerics refuses;
    in training an image that does not decode) changes nothing: the
    global step's increment waits for the updates, so a checkpoint saved
    then resumes at the failed step."""
    from resnet.train import config, graphs
    images = tf1.placeholder(tf.float32, [4, 8, 8, 1])
    batch = graphs.Batch(tf.debugging.check_numerics(images, "input"),
                         tf.constant([0, 1, 0, 1], tf.int64))
    train = graphs.build_training(models.resnet(8, 2), batch,
                                  config.TrainConfig()).train_op
    variables = tf1.global_variables()
    bad = np.full([4, 8, 8, 1], np.nan, np.float32)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        before = session.run(variables)
        for _ in range(5):
            with pytest.raises(tf.errors.InvalidArgumentError):
                session.run(train, {images: bad})
        for name, old, new in zip(variables, before, session.run(variables)):
            np.testing.assert_array_equal(old, new, err_msg=name.op.name)
        session.run(train, {images: np.zeros_like(bad)})
        assert session.run(tf1.train.get_global_step()) == 1
