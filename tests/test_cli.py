"""resnet-run and the example scripts, end to end in subprocesses."""
import os
import subprocess
import sys

import pytest

from tests import formats
from tests.conftest import CPP_LOG_LINE, assert_usage_error, cli_refuses, run

QUICK = ["--depth", "8", "--epochs", "1", "--no-progress"]


@pytest.mark.slow
def test_cli_trains_on_digits_and_reports_test_accuracy(tmp_path):
    result = run("-m", "resnet.resnet_run", *QUICK, "--batch-size", "32",
                 "--model-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "epoch 1 step 45:" in result.stderr  # ceil(1437 / 32)
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("test accuracy ") and "after 45 steps" in line
    assert float(line.split()[2]) > 0.5
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_deterministic_runs_without_cpp_lines():
    """--deterministic's rewrite of the input's parallel map logged a C++
    error line ("NodeDef mentions attribute use_unbounded_threadpool")."""
    result = run("-m", "resnet.resnet_run", *QUICK, "--deterministic",
                 TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stderr
    assert not CPP_LOG_LINE.search(result.stderr), result.stderr


@pytest.mark.parametrize("code", [
    "from batch_renorm import batch_renorm",
    "import batch_renorm.layer",
    "from resnet.data import files"])
def test_the_libraries_import_without_cpp_lines(code):
    """README's indexing one-liner and the layer printed ~25 TensorFlow C++
    lines (oneDNN, "failed call to cuInit"); the command line imports no
    TensorFlow before its flags are read (--xla, --verbose)."""
    result = run("-c", code + "; print('ok')", TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert result.stderr == "", result.stderr
    probe = run("-c", "import sys, batch_renorm, resnet.resnet_run; "
                "print('tensorflow' in sys.modules)")
    assert probe.stdout == "False\n", probe.stderr


def test_help_keeps_specs_whole_and_gives_the_defaults():
    result = run("-m", "resnet.resnet_run", "--help", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    assert "conv:32:pool=max,block:64:strides=2,dense:128:dropout=0.3," in (
        result.stdout)
    text = " ".join(result.stdout.split())
    assert "(default per dataset: digits 64, mnist 128," in text
    assert "(default per dataset: digits 30, mnist 10," in text


def test_tensorboard_comes_with_the_package():
    """README's `tensorboard --logdir DIR` works after its install command:
    the command beside this Python's, and it runs."""
    command = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    assert os.path.exists(command), "setup.py does not install tensorboard"
    result = subprocess.run([command, "--version_tb"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


@pytest.mark.parametrize("args, message", [
    (["--epochs", "two"], "--epochs: invalid int value: 'two'"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--depth", "21"], "6n + 2"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--layers", "conv:x"], "bad layer"),
    (["--lr-boundaries", "1,b"], "comma-separated steps"),
])
def test_usage_errors_exit_2_with_one_line(args, message, capsys):
    cli_refuses(args, message, capsys)


@pytest.mark.slow
def test_channels_first_without_onednn_or_gpu_is_a_usage_error():
    # TensorFlow's own CPU kernels are NHWC only; oneDNN's take NCHW too.
    result = run("-m", "resnet.resnet_run", "--data-format", "NCHW",
                 TF_ENABLE_ONEDNN_OPTS="0", CUDA_VISIBLE_DEVICES="")
    assert_usage_error(result, "data_format NCHW needs a GPU, or oneDNN on "
                       "the CPU (TF_ENABLE_ONEDNN_OPTS=0 turns it off): use "
                       "NHWC")


@pytest.mark.slow
def test_missing_dataset_files_are_a_usage_error(tmp_path):
    # An empty data dir and a file in the way of the download: no network.
    result = run("-m", "resnet.resnet_run", "--dataset", "mnist",
                 "--data-dir", str(tmp_path / "train-images-idx3-ubyte.gz" / "x"))
    assert_usage_error(result, "train-images-idx3-ubyte.gz")


@pytest.mark.parametrize("script, writer, extra", [
    ("mnist_resnet.py", formats.write_mnist, []),
    ("fashion_mnist_resnet.py", formats.write_mnist, []),
    ("cifar10_resnet.py", formats.write_cifar10, ["--validation", "10"]),
])
@pytest.mark.slow
def test_example_scripts_run_one_epoch(tmp_path, script, writer, extra):
    writer(tmp_path)
    result = run(os.path.join("examples", script), *QUICK,
                 "--data-dir", str(tmp_path), *extra)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


@pytest.mark.slow
def test_cifar10_preset_picks_the_depth_and_states_the_papers_error(tmp_path):
    formats.write_cifar10(tmp_path / "data")
    result = run(os.path.join("examples", "cifar10_resnet.py"),
                 "--preset", "resnet32", "--epochs", "1", "--no-progress",
                 "--validation", "10", "--data-dir", str(tmp_path / "data"),
                 "--model-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "resnet32: the paper's CIFAR-10 test error is 7.51%" in result.stdout
    assert '"name": "resnet32"' in (tmp_path / "run" / "model.json").read_text()
