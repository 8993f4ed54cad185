"""The model directory's promises (README "Checkpoints, resuming and
faults"): its checkpoint files are the truth, nothing is written over, one
run at a time, rotation over every run's checkpoints, a checkpoint from
before a divergence is kept, a resume with other arguments is refused, and
a failed write is one line that names what is intact."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.errors import (CheckpointMismatchError, CheckpointSaveError,
                           ModelDirInUseError, RunChangedError,
                           TrainingDiverged)
from resnet.runtime.session_config import precision_of, session_config
from resnet.storage import atomic
from tests.conftest import assert_usage_error, cli_refuses, run, start

tf1 = tf.compat.v1
BATCH = 128  # digits: 12 steps per epoch


def network(spec="conv:4", **options):
    """The directory's rules need no depth: one conv layer, batch renorm."""
    return models.custom(spec, 10, norm="batch_renorm", **options)


def make(digits, model_dir, **options):
    return ConvolutionNN(network(), digits, model_dir=str(model_dir),
                         progress=False, **options)


def train(digits, model_dir, epochs=1, stop_at=None, **options):
    """Trains in a fresh ConvolutionNN; returns its final global step."""
    hooks = [tf1.train.StopAtStepHook(last_step=stop_at)] if stop_at else []
    with make(digits, model_dir, **options) as cnn:
        cnn.train(BATCH, epochs, hooks=hooks)
        return int(cnn.session.run(cnn.global_step))


def steps_in(model_dir):
    return sorted(int(name[len("model.ckpt-"):-len(".index")])
                  for name in os.listdir(model_dir)
                  if name.startswith("model.ckpt-") and name.endswith(".index")
                  and os.path.isfile(os.path.join(model_dir, name)))


def restored_step(digits, model_dir):
    with make(digits, model_dir) as cnn:
        return int(cnn.session.run(cnn.global_step))


@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_the_checkpoint_files_not_the_index_are_the_truth(digits, tmp_path,
                                                          damage):
    train(digits, tmp_path, checkpoint_steps=5)  # 5, 10, 12
    index = tmp_path / "checkpoint"
    if damage == "missing":
        index.unlink()
    else:
        index.write_text("model_checkpoint_path: \x00\x07 garbage {{{")
    assert restored_step(digits, tmp_path) == 12
    # And the next run goes on from there, rewriting the index.
    assert train(digits, tmp_path, checkpoint_steps=5) == 24
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-24")


def test_an_unreadable_checkpoint_is_moved_aside_never_written_over(
        digits, tmp_path):
    train(digits, tmp_path, checkpoint_steps=5)
    data = tmp_path / "model.ckpt-12.data-00000-of-00001"
    whole = data.read_bytes()
    damaged = whole[:len(whole) // 2]
    data.write_bytes(damaged)
    assert train(digits, tmp_path, checkpoint_steps=5) == 12  # from 10
    kept = tmp_path / "damaged" / data.name
    assert kept.read_bytes() == damaged
    assert steps_in(tmp_path) == [5, 10, 12]
    assert restored_step(digits, tmp_path) == 12


def test_rotation_keeps_the_newest_and_an_epochs_end_across_runs(
        digits, tmp_path):
    # Three runs (as after kills), a checkpoint every step: 12 is the end
    # of epoch 1; each run counts the directory's checkpoints, not its own.
    train(digits, tmp_path, epochs=2, checkpoint_steps=1, stop_at=16)
    train(digits, tmp_path, epochs=2, checkpoint_steps=1, stop_at=19)
    leftovers = [tmp_path / "model.ckpt-20.data-00000-of-00001.tempstate123",
                 tmp_path / ".run.json.tmp999"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    (tmp_path / "model.ckpt-20_temp").mkdir()
    train(digits, tmp_path, epochs=2, checkpoint_steps=1, stop_at=22)
    assert steps_in(tmp_path) == [12, 18, 19, 20, 21, 22]
    assert not any(path.exists() for path in leftovers)
    assert not (tmp_path / "model.ckpt-20_temp").exists()
    state = tf1.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        f"model.ckpt-{step}" for step in (12, 18, 19, 20, 21, 22)]


def test_divergence_names_the_kept_checkpoint_of_a_completed_epoch(
        digits, tmp_path):
    train(digits, tmp_path, epochs=2, checkpoint_steps=1, stop_at=20)
    with make(digits, tmp_path, checkpoint_steps=1, learning_rate=1e30,
              allow_changes=True) as cnn:
        with pytest.raises(TrainingDiverged) as diverged:
            cnn.train(BATCH, 1)
    assert "model.ckpt-12, the newest of a completed epoch, is kept" in str(
        diverged.value)
    assert 12 in steps_in(tmp_path)
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-12"))
    assert all(np.all(np.isfinite(reader.get_tensor(name)))
               for name, dtype in reader.get_variable_to_dtype_map().items()
               if dtype.is_floating)


def test_an_empty_model_json_is_rewritten_and_the_variables_checked(
        digits, tmp_path):
    train(digits, tmp_path)
    signature = (tmp_path / "model.json").read_text()
    (tmp_path / "model.json").write_text("")  # disk full, or a kill
    assert train(digits, tmp_path) == 24      # resumed, not from scratch
    assert (tmp_path / "model.json").read_text() == signature


def test_records_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    atomic.write_json(str(path), {"seed": 0})

    def no_space(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic.write_json(str(path), {"seed": 1})
    assert json.loads(path.read_text()) == {"seed": 0}
    assert os.listdir(tmp_path) == ["run.json"]


def test_a_resume_with_other_arguments_is_refused(digits, tmp_path):
    train(digits, tmp_path, epochs=2, checkpoint_steps=5, stop_at=17)  # mid-epoch 2
    with make(digits, tmp_path, seed=1, learning_rate=0.5) as cnn:
        with pytest.raises(RunChangedError) as refused:
            cnn.train(BATCH, 1)
        assert cnn.session.run(cnn.global_step) == 17  # nothing trained
    assert str(refused.value) == (
        f"{tmp_path} was trained with other arguments (learning_rate: 0.1 "
        f"there, 0.5 here; seed: 0 there, 1 here): resume with the same ones, "
        f"allow the changes (allow_changes=True, --allow-changes) or choose "
        f"another model_dir")
    # The batch size counts an epoch's position: not even allowed mid-epoch.
    with make(digits, tmp_path, allow_changes=True) as cnn:
        with pytest.raises(RunChangedError, match="mid-epoch with batch_size 128"):
            cnn.train(64, 1)
    with make(digits, tmp_path, learning_rate=0.5, allow_changes=True) as cnn:
        cnn.train(BATCH, 1)
        assert cnn.session.run(cnn.global_step) == 24
    assert json.loads((tmp_path / "run.json").read_text())["learning_rate"] == 0.5
    # One object may change its batch size between its own calls, at an
    # epoch's end: that is no resume.
    with make(digits, tmp_path, learning_rate=0.5) as cnn:
        cnn.train(BATCH, 1)
        cnn.train(64, 1)
        assert cnn.epochs_done == 4


def test_one_run_at_a_time(digits, tmp_path):
    with make(digits, tmp_path):
        # A notebook cell run again while its earlier object lives.
        with pytest.raises(ModelDirInUseError,
                           match="in use by an earlier object in this "
                           "process .*: close\\(\\) it or del it first"):
            make(digits, tmp_path)
    # Closed, it is free again; and a killed holder's lock dies with it.
    holder = start("-c", (
        "import sys, time; from resnet.storage.model_dir import DirectoryLock; "
        f"lock = DirectoryLock({str(tmp_path)!r}); print(flush=True); "
        "time.sleep(60)"), stderr=None)
    holder.stdout.readline()
    result = run("-m", "resnet.resnet_run", "--layers", "conv:4", "--epochs",
                 "1", "--no-progress", "--model-dir", str(tmp_path))
    assert_usage_error(result, f"in use by another run (pid {holder.pid})")
    holder.kill()
    holder.wait()
    make(digits, tmp_path).close()


def test_a_full_disk_is_one_error_naming_what_is_intact(digits, tmp_path,
                                                         monkeypatch):
    with make(digits, tmp_path, checkpoint_steps=5) as cnn:
        saver = cnn._trainer.checkpoints.saver
        save = saver.save

        def fills_the_disk(session, path, **options):
            if path.endswith("-10"):
                raise tf.errors.ResourceExhaustedError(
                    None, None, f"{path}.data-00000-of-00001.tempstate1; "
                    f"No space left on device")
            return save(session, path, **options)

        monkeypatch.setattr(saver, "save", fills_the_disk)
        with pytest.raises(CheckpointSaveError) as failed:
            cnn.train(BATCH, 1)
    message = str(failed.value)
    assert message.startswith(f"writing checkpoint {tmp_path}/model.ckpt-10 "
                              f"failed (no space left on device; ")
    assert message.endswith(f"free in {tmp_path}); the checkpoint before, "
                            f"{tmp_path}/model.ckpt-5, is intact")
    assert "\n" not in message
    assert steps_in(tmp_path) == [5]


def test_only_argument_errors_are_usage_errors():
    # A ValueError from inside training is a fault of ours, not a usage
    # error: a traceback and exit 1, not exit 2 and a usage line.
    result = run("-c", (
        "import sys; from resnet import resnet_run; from resnet.train import loop\n"
        "def broken(*args, **kwargs): raise ValueError('a bug of ours')\n"
        "loop.train = broken\n"
        "sys.exit(resnet_run.main(['--layers', 'conv:4', '--epochs', '1', "
        "'--no-progress']))"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "ValueError: a bug of ours" in result.stderr
    assert "resnet-run: error" not in result.stderr


@pytest.mark.parametrize("content", [None, "", "[1, 2]", "5"])
def test_a_lost_run_json_is_no_licence_to_change(digits, tmp_path, content):
    train(digits, tmp_path)
    path = tmp_path / "run.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with make(digits, tmp_path, learning_rate=0.5) as cnn:
        with pytest.raises(RunChangedError, match="run.json is missing or "
                           "unreadable: the arguments .* cannot be checked"):
            cnn.train(BATCH, 1)
    with make(digits, tmp_path, allow_changes=True) as cnn:
        cnn.train(BATCH, 1)
    assert json.loads(path.read_text())["learning_rate"] == 0.1


def test_a_record_of_an_earlier_version_checks_what_it_holds(digits,
                                                             tmp_path):
    """run.json without the fields this version adds (workers, precision,
    ...): those are not checked, the others are."""
    train(digits, tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    for key in ("workers", "sync_statistics", "precision", "model"):
        del record[key]
    (tmp_path / "run.json").write_text(json.dumps(record))
    with make(digits, tmp_path) as cnn:
        cnn.train(BATCH, 1)
    with make(digits, tmp_path, learning_rate=0.5) as cnn:
        with pytest.raises(RunChangedError, match="learning_rate: 0.1 there"):
            cnn.train(BATCH, 1)


def test_what_changes_the_run_is_refused_on_resume(digits, tmp_path):
    """Each of these was resumed without a word: the precision, dropout
    with model.json gone (the variables are the same). Workers and
    synchronized statistics are recorded alike (test_distributed)."""
    train(digits, tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["workers"], record["sync_statistics"],
            record["precision"]) == (1, False, precision_of(session_config()))
    # Recorded as the other precision (not every CPU computes bfloat16).
    other = "float32" if record["precision"] == "bfloat16" else "bfloat16"
    (tmp_path / "run.json").write_text(json.dumps(
        dict(record, precision=other)))
    with make(digits, tmp_path) as cnn:
        with pytest.raises(RunChangedError, match=f"precision: "
                           f"'{other}' there, '{record['precision']}' here"):
            cnn.train(BATCH, 1)
    (tmp_path / "run.json").write_text(json.dumps(record))
    (tmp_path / "model.json").unlink()
    dropped = network("conv:4:dropout=0.5")
    with ConvolutionNN(dropped, digits, model_dir=str(tmp_path),
                       progress=False) as cnn:
        with pytest.raises(RunChangedError, match=r"model.layers\[0\]"
                           r".dropout_rate: 0.0 there, 0.5 here"):
            cnn.train(BATCH, 1)


def test_odd_entries_neither_crash_nor_count(digits, tmp_path):
    train(digits, tmp_path)
    (tmp_path / "model.json").write_text("[]")  # JSON, of the wrong type
    (tmp_path / "model.ckpt-7.index").mkdir()   # not a checkpoint
    for leftover in ("model.ckpt-3.tempstate9", ".x.tmp1"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "part").write_text("half")
    assert train(digits, tmp_path) == 24
    assert steps_in(tmp_path) == [12, 24]
    assert (tmp_path / "model.ckpt-7.index").is_dir()
    assert not (tmp_path / "model.ckpt-3.tempstate9").exists()
    assert not (tmp_path / ".x.tmp1").exists()
    assert json.loads((tmp_path / "model.json").read_text())["dataset"] == "digits"


def test_training_longer_says_which_defaults_follow_the_length(tmp_path,
                                                             capsys):
    from resnet import resnet_run
    common = ["--layers", "conv:4", "--model-dir", str(tmp_path)]
    assert resnet_run.main([*common, "--epochs", "1", "--no-progress"]) == 0
    cli_refuses([*common, "--epochs", "2"], "(the default lr_boundaries and "
                "renorm_schedule follow the run's length: to train longer",
                capsys)


def test_without_model_json_a_subset_of_the_variables_is_refused(digits,
                                                                  tmp_path):
    blocks = "conv:4,block:8:strides=2"
    with ConvolutionNN(network(blocks, shortcut="B"), digits,
                       model_dir=str(tmp_path), progress=False) as cnn:
        cnn.train(BATCH, 1)
    (tmp_path / "model.json").unlink()
    # Option A has every variable of option B but the projections.
    with pytest.raises(CheckpointMismatchError,
                       match="projection/batch_renorm/beta there only"):
        ConvolutionNN(network(blocks), digits, model_dir=str(tmp_path))


def test_a_resume_with_non_iid_groups_sees_the_same_batches(digits, tmp_path):
    def weights(model_dir):
        with make(digits, model_dir, **groups) as cnn:
            return cnn.session.run(tf1.trainable_variables())

    groups = dict(classes_per_group=2, group_size=4)
    train(digits, tmp_path / "whole", epochs=2, **groups)
    train(digits, tmp_path / "resumed", epochs=1, stop_at=7, **groups)
    assert train(digits, tmp_path / "resumed", epochs=2, **groups) == 22
    for a, b in zip(weights(tmp_path / "whole"), weights(tmp_path / "resumed")):
        np.testing.assert_array_equal(a, b)


def test_the_run_length_defaults_of_runs_of_one_or_two_steps():
    """(0, 0) and (1, 1): the defaults refused by their own check (strictly
    increasing boundaries) at 1 or 2 steps a run."""
    from resnet.train.config import TrainConfig, run_length_defaults
    for steps, boundaries in ((1, (0,)), (2, (1,)), (3, (1, 2)),
                              (938, (469, 703))):
        train = run_length_defaults(steps)["train"]
        assert train["lr_boundaries"] == boundaries
        TrainConfig(**train)


def test_a_dataset_named_with_a_parenthesis_reopens(digits, tmp_path):
    """Only an earlier version's files-dataset names ("folder (30 ...")
    are compared by their format: "digits (my copy)" was cut to "digits"
    and its own model directory refused."""
    import dataclasses
    mine = dataclasses.replace(digits, name="digits (my copy)")
    network = models.custom("conv:4", 10)
    with ConvolutionNN(network, mine, model_dir=str(tmp_path),
                       progress=False) as cnn:
        cnn.train(500, 1)
    ConvolutionNN(network, mine, model_dir=str(tmp_path)).close()
