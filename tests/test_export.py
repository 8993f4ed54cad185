"""SavedModel export, loaded by a fresh eager TensorFlow 2 process that
imports none of this project."""
import json
import os
import subprocess

import numpy as np
import pytest

import tensorflow as tf

from resnet import models
from resnet.errors import ExportError
from resnet.storage import export
from resnet.convolution_nn import ConvolutionNN
from resnet.runtime.session_config import session_config
from tests.conftest import cli_refuses, needs_nchw, run

LOAD = """
import json, sys
import numpy as np
import tensorflow as tf
assert tf.executing_eagerly()
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](images=tf.constant(np.load(sys.argv[2])))
mine = [m for m in sys.modules if m.split(".")[0] in ("resnet", "batch_renorm")]
print(json.dumps({"ours_imported": mine,
                  **{k: v.numpy().tolist() for k, v in out.items()}}))
"""


def load_elsewhere(path, images, tmp_path):
    np.save(tmp_path / "images.npy", images)
    result = run("-c", LOAD, str(path), str(tmp_path / "images.npy"),
                 PYTHONPATH=None)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("ours_imported") == []
    return {key: np.array(value) for key, value in out.items()}


NETWORKS = {
    "resnet8": models.resnet(8, 10, norm="batch_renorm"),
    "resnet8-nchw": pytest.param(
        models.resnet(8, 10, norm="batch_renorm", data_format="NCHW"),
        marks=needs_nchw),
    "custom": models.custom("conv:8:pool=max,block:16:strides=2,"
                            "dense:32:dropout=0.3", 10, norm="batch_norm"),
}


@pytest.mark.parametrize("network", NETWORKS.values(), ids=NETWORKS.keys())
def test_the_export_computes_what_the_session_does(digits, tmp_path, network):
    images = digits.x_test[:50]
    with ConvolutionNN(network, digits, progress=False,
                       session_config=session_config(precision="float32")) as cnn:
        cnn.train(batch_size=128, num_epoch=1)
        path = cnn.export(tmp_path / "model")
        logits = cnn.session.run(cnn.inference.logits,
                                 {cnn.inference.images: images})
        classes = cnn.predict(images)
    out = load_elsewhere(path, images, tmp_path)
    assert sorted(out) == ["classes", "logits", "probabilities"]
    np.testing.assert_array_equal(out["classes"], classes)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0,
                               rtol=1e-5)
    assert not list(tmp_path.glob(".model.*"))  # no staging left behind


def test_a_failed_export_leaves_the_previous_one(digits, tmp_path, monkeypatch):
    network = NETWORKS["resnet8"]
    with ConvolutionNN(network, digits, progress=False) as cnn:
        path = cnn.export(tmp_path / "model")
        before = sorted(p.name for p in tmp_path.rglob("*"))
        pb = (tmp_path / "model" / "saved_model.pb").read_bytes()

        def half_written(network, image_shape, preprocess, values, directory,
                         class_names):
            os.makedirs(directory)
            with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
                f.write(b"half")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(export, "_write", half_written)
        with pytest.raises(ExportError) as failed:
            cnn.export(path)
        assert str(failed.value).startswith(
            f"writing the SavedModel to {path} failed (no space left on "
            f"device; ")
        assert str(failed.value).endswith(
            "free); the earlier export there is intact")

        def saver_fails(*args, **kwargs):  # as TensorFlow's saver reports it
            raise tf.errors.ResourceExhaustedError(
                None, None, "variables.data-00000-of-00001.tempstate; No "
                "space left on device")

        monkeypatch.setattr(export, "_write", saver_fails)
        with pytest.raises(ExportError, match="no space left on device"):
            cnn.export(path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "model" / "saved_model.pb").read_bytes() == pb
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="is no SavedModel"):
        export.check_export_path(tmp_path / "notes")
    # An earlier export that someone put other files in is not replaced.
    (tmp_path / "model" / "ckpt").mkdir()
    with pytest.raises(ValueError, match="holds other files"):
        export.check_export_path(tmp_path / "model")


def test_an_export_through_a_symbolic_link_goes_to_its_target(digits,
                                                               tmp_path):
    """A dangling link (to a folder not made yet) gave NotADirectoryError;
    a link to an earlier export has it replaced, the link kept."""
    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "exports" / "v1")
    with ConvolutionNN(NETWORKS["resnet8"], digits, progress=False) as cnn:
        assert cnn.export(link) == str(tmp_path / "exports" / "v1")
        first = (tmp_path / "exports" / "v1" / "saved_model.pb").stat()
        cnn.export(link)
    assert link.is_symlink()
    assert (link / "saved_model.pb").stat().st_ino != first.st_ino


def test_a_killed_exports_leftovers_are_cleaned_and_the_export_put_back(
        digits, tmp_path):
    """As a kill between the two renames leaves them: the earlier export
    moved aside into the staging dir of a dead process, none in place."""
    with ConvolutionNN(NETWORKS["resnet8"], digits, progress=False) as cnn:
        cnn.export(tmp_path / "model")
    pb = (tmp_path / "model" / "saved_model.pb").read_bytes()
    finished = subprocess.Popen(["true"])
    finished.wait()
    staging = tmp_path / f".model.staging-{finished.pid}-abc"
    staging.mkdir()
    os.rename(tmp_path / "model", staging / "old")
    (tmp_path / f".model.staging-{os.getpid()}-live").mkdir()  # under way
    export._remove_stale_staging(str(tmp_path), ".model.staging-")
    assert (tmp_path / "model" / "saved_model.pb").read_bytes() == pb
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".model.staging-{os.getpid()}-live", "model"]


@pytest.mark.slow
def test_cli_exports_a_finished_run_without_training(tmp_path, monkeypatch,
                                                     capsys):
    common = ["-m", "resnet.resnet_run", "--depth", "8", "--epochs", "1",
              "--no-progress", "--model-dir", str(tmp_path / "run")]
    assert run(*common).returncode == 0
    result = run(*common, "--export", str(tmp_path / "model"))
    assert result.returncode == 0, result.stderr
    assert "all 1 epochs are done already" in result.stderr
    assert f"exported a SavedModel to {tmp_path / 'model'}" in result.stderr
    assert (tmp_path / "model" / "saved_model.pb").exists()
    # The disk full while the export is written: one line, status 1, the
    # previous export kept.
    from resnet import resnet_run

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write", full)
    capsys.readouterr()
    assert resnet_run.main([*common[2:], "--export",
                            str(tmp_path / "model")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"resnet-run: writing the SavedModel to {tmp_path / 'model'} failed "
        f"(no space left on device; ")
    assert (tmp_path / "model" / "saved_model.pb").exists()


def test_cli_refuses_an_export_path_it_cannot_use(tmp_path, capsys):
    """Checked before training, in one line each."""
    common = ["--layers", "conv:4", "--epochs", "1",
              "--model-dir", str(tmp_path / "run")]
    (tmp_path / "file").write_text("x")
    cli_refuses([*common, "--export", str(tmp_path / "file")],
                "is a file, not a directory", capsys)
    # An export must not hold the model dir.
    cli_refuses([*common[:-1], str(tmp_path / "e" / "ckpt"),
                 "--export", str(tmp_path / "e")],
                "must not hold one another", capsys)
    assert not (tmp_path / "e").exists()
    cli_refuses([*common, "--export", "/proc/exported"],
                "nothing can be created in /proc", capsys)
    assert not (tmp_path / "run").exists()  # nothing trained


def test_the_python_api_is_quiet_too():
    """README's first import, a graph and a session: none of TensorFlow's
    C++ lines (start-up, CUDA, MLIR) on stderr."""
    script = ("from resnet import models\n"
              "from resnet.convolution_nn import ConvolutionNN\n"
              "from resnet.data import datasets\n"
              "ds = datasets.load('digits')\n"
              "cnn = ConvolutionNN(models.resnet(8, 10, norm='batch_norm', "
              "norm_momentum=0.9), ds, progress=False)\n"  # no warning
              "cnn.train(batch_size=128, num_epoch=1)\n"
              "print(cnn.evaluate()['accuracy'])\n")
    result = run("-c", script, TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_start_up_is_quiet_unless_verbose():
    """No TensorFlow start-up lines (oneDNN, "failed call to cuInit" on a
    machine without a GPU); --verbose shows TensorFlow's logging."""
    args = ["-m", "resnet.resnet_run", "--depth", "8", "--epochs", "1",
            "--no-progress", "--norm-momentum", "0.9"]  # 23 steps: no warning
    quiet = run(*args, TF_CPP_MIN_LOG_LEVEL=None)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == [
        "resnet8: 75,002 parameters, about 5 MiB to train at batch 64; "
        "building the graph",
        "epoch 1 step 23: " + quiet.stderr.split("epoch 1 step 23: ")[1]
        .splitlines()[0]]
    verbose = run(*args, "--verbose", TF_CPP_MIN_LOG_LEVEL=None)
    assert verbose.returncode == 0
    assert any(line[:5] in ("I0000", "W0000", "E0000")
               for line in verbose.stderr.splitlines()), verbose.stderr
