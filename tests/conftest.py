"""What the tests share: a fresh graph, the digits dataset, running the
command line in a subprocess and what a usage error looks like."""
import dis
import inspect
import os
import re
import signal
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import resnet  # noqa: E402,F401  (before TensorFlow: what users get of oneDNN)
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A suite started in the background of a script (`pytest ... &`) inherits
# SIGINT ignored, and so would every process it starts: the Ctrl-C tests
# need Python's own handler, here and (inherited as the default) there.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _nchw_supported():
    from resnet.runtime.session_config import check_device_supports
    try:
        check_device_supports("NCHW")
    except ValueError:
        return False
    return True


# NCHW on a CPU takes oneDNN, which TensorFlow turns on by default only on
# CPUs with AVX512_VNNI, AVX512_BF16 or AMX (TF_ENABLE_ONEDNN_OPTS=1 forces
# it elsewhere).
needs_nchw = pytest.mark.skipif(
    not _nchw_supported(), reason="NCHW needs oneDNN, off on this CPU by "
    "default, or a GPU")


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


# A line of TensorFlow's C++ logging (absl's format: level, date, time).
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.MULTILINE)


def environment(**changes):
    """The environment of a test's subprocess: this one's, with the
    repository importable and TensorFlow's C++ logs off, then `changes`
    (a variable given as None is removed)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def run(*args, **changes):
    """Runs `python ARGS` from the repository's root; returns the
    CompletedProcess (stdout, stderr as text)."""
    return subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, env=environment(**changes), cwd=ROOT,
                          timeout=600)


def start(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **changes):
    """Starts `python ARGS` from the repository's root, as `run` does;
    returns the Popen (text pipes)."""
    return subprocess.Popen([sys.executable, *args], stdout=stdout,
                            stderr=stderr, text=True, cwd=ROOT,
                            env=environment(**changes))


def wait_for_line(process, text):
    """Reads the process's stderr until a line holds `text`; returns it."""
    for line in process.stderr:
        if text in line:
            return line
    raise AssertionError(f"{text!r} never came; exit {process.wait()}")


def final_weights(model_dir):
    """{name: value} of the newest checkpoint in model_dir."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    return {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()}


def assert_same_weights(a, b):
    """Two `final_weights` bit for bit."""
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def cli_refuses(args, message, capsys):
    """resnet-run's `main(args)`, in this process, ends with exit status 2
    and one usage line holding `message` (the process's own exit is
    README's smoke tests' to show: `assert_usage_error`). `capsys` may be
    `capfd`, to see the lines of the workers `--local-workers` starts."""
    from resnet import resnet_run
    try:
        status = resnet_run.main([*args, "--no-progress"])
    except SystemExit as exit:
        status = exit.code
    assert_usage_line(status, capsys.readouterr().err, message)


def assert_usage_line(status, err, message, prog="resnet-run"):
    """Exit status 2, no traceback, and the last line of `err` (stderr) is
    the one usage line holding `message` (TensorFlow built with CUDA may
    log its failed cuInit before it)."""
    assert status == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: "), err
    assert message in last, err


def assert_usage_error(result, message, prog="resnet-run"):
    """`assert_usage_line` for a finished process."""
    assert_usage_line(result.returncode, result.stderr, message, prog)


# What starts a process, as a test module names it: our helpers and the
# subprocess module (and any helper of the module that uses them).
_PROCESS_STARTERS = (run, start, subprocess)


def _starts_processes(function, module, seen):
    """Whether `function` or a function of `module` it calls refers to one
    of _PROCESS_STARTERS as a global."""
    codes = [function.__code__]
    while codes:  # the function's own code and its nested functions'
        code = codes.pop()
        codes += [c for c in code.co_consts if hasattr(c, "co_code")]
        for instruction in dis.get_instructions(code):
            if instruction.opname != "LOAD_GLOBAL":
                continue
            value = getattr(module, instruction.argval, None)
            if any(value is starter for starter in _PROCESS_STARTERS):
                return True
            if (inspect.isfunction(value) and value not in seen
                    and value.__module__ == module.__name__):
                seen.add(value)
                if _starts_processes(value, module, seen):
                    return True
    return False


def pytest_collection_modifyitems(items):
    """The `subprocess` marker on every test that starts a process, found
    in its code, and the `slow` one with it (a process imports TensorFlow
    anew: ~5 s on 2 cores): README's `-m "not subprocess"` cut does what it
    says, and the fast tier (`-m "not slow"`) runs in this process only.

    Then the slow tests go first, in their files' order: pytest-xdist
    (`-n 2`) hands tests out in this order, and a long test handed out
    last would leave the other process idle while it ends."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and _starts_processes(
                function, item.module, {function}):
            item.add_marker(pytest.mark.subprocess)
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
