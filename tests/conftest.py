"""What the tests share: a fresh graph, the digits dataset, running the
command line in a subprocess and what a usage error looks like."""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def graph():
    """A fresh graph, made default, with a fixed graph-level seed."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        yield g


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset (8x8x1, 10 classes)."""
    from resnet.data import datasets
    return datasets.load("digits")


def run(*args, **environment):
    """Runs `python ARGS` from the repository's root; returns the
    CompletedProcess (stdout, stderr as text). An environment variable
    given as None is removed."""
    env = dict(os.environ, **dict(dict(PYTHONPATH=ROOT,
                                        TF_CPP_MIN_LOG_LEVEL="2"),
                                   **environment))
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


def assert_usage_error(result, message, prog="resnet-run"):
    """Exit status 2, no traceback, and the last line of stderr is the one
    usage line holding `message` (TensorFlow built with CUDA may log its
    failed cuInit before it)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: "), result.stderr
    assert message in last, result.stderr
