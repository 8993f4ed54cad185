"""Session settings: threads sized to the step and the process's cores,
the CPU's flags under ONEDNN_MAX_CPU_ISA, and the layouts a CPU runs."""
import os
import platform

import pytest

from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.runtime.session_config import cpu_description, session_config
from tests.conftest import run


def test_threads_are_sized_to_the_step(monkeypatch):
    if hasattr(os, "sched_setaffinity"):
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})  # as under taskset -c
        try:
            assert session_config().intra_op_parallelism_threads == 1
        finally:
            os.sched_setaffinity(0, allowed)
    monkeypatch.setattr("resnet.runtime.session_config.usable_cores", lambda: 4)

    def threads(**kwargs):
        config = session_config(**kwargs)
        return (config.intra_op_parallelism_threads,
                config.inter_op_parallelism_threads)

    assert threads() == (4, 1)
    # 8 * 32 * 32 pixels per core at most: half the cores per op, two ops
    # at a time; above, every core per op, one op at a time.
    assert threads(batch_size=32, image_shape=(32, 32, 3)) == (2, 2)
    assert threads(batch_size=33, image_shape=(32, 32, 3)) == (4, 1)
    assert threads(batch_size=512, image_shape=(8, 8, 1)) == (2, 2)
    assert threads(batch_size=8, image_shape=(32, 32, 3), intra_threads=3,
                   inter_threads=1) == (3, 1)
    assert threads(batch_size=8, image_shape=(32, 32, 3),
                   intra_threads=3) == (3, 2)
    with pytest.raises(ValueError, match="inter_threads must be"):
        session_config(inter_threads=0)


def test_onednn_isa_limit_removes_the_flags_above_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA (how a benchmark runs an AVX2-only CPU's kernels
    on an AVX-512 one) takes its flags away, and bfloat16 with them."""
    from batch_renorm import cpu
    every = set(cpu.SPEED_FLAGS)
    monkeypatch.setattr(cpu, "cpuinfo", lambda key: " ".join(every))
    for limit, want in (("", every), ("ALL", every),
                        ("AVX512_CORE_AMX", every),
                        ("AVX512_CORE_BF16", every - {"amx_bf16"}),
                        ("avx512_core", {"avx2", "avx512f"}),
                        ("AVX2", {"avx2"}), ("AVX2_VNNI", {"avx2"}),
                        ("SSE41", set()), ("garbage", every)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
        assert cpu.cpu_flags() == want, limit
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert not cpu.has_bfloat16()
    assert "oneDNN limited by ONEDNN_MAX_CPU_ISA=SSE41" in cpu_description()
    assert session_config().graph_options.rewrite_options \
        .auto_mixed_precision_onednn_bfloat16 == 0  # float32 under the limit


def test_channels_first_needs_onednn_or_a_gpu(digits, monkeypatch):
    monkeypatch.setattr("resnet.runtime.session_config.onednn_enabled", lambda: False)
    network = models.resnet(8, 10, data_format="NCHW")
    with pytest.raises(ValueError, match="NCHW needs a GPU, or oneDNN"):
        ConvolutionNN(network, digits)



XLA_PROBE = """
import tensorflow as tf
from resnet.runtime.session_config import session_config
tf1 = tf.compat.v1
graph = tf.Graph()
with graph.as_default():
    x = tf1.placeholder(tf.float32, [8, 8])
    y = tf.reduce_sum(tf.tanh(tf.matmul(x, x) * 2.0 + 1.0))
try:
    config = session_config(xla={xla})
except ValueError as error:
    raise SystemExit(str(error))
with tf1.Session(graph=graph, config=config) as session:
    metadata = tf1.RunMetadata()
    session.run(y, {{x: [[0.1] * 8] * 8}},
                options=tf1.RunOptions(trace_level=3), run_metadata=metadata)
print(sum("xla_run" in node.node_name for device in
          metadata.step_stats.dev_stats for node in device.node_stats))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("xla, flags", [(True, "--tf_xla_cpu_global_jit"),
                                        (True, "--tf_xla_cpu_global_jit=true"),
                                        (False, "--tf_xla_cpu_global_jit"),
                                        (True, None)])
def test_xla_compiles_on_the_cpu_or_says_why_not(xla, flags):
    """global_jit_level alone compiles nothing on a CPU (--xla did
    nothing): with TensorFlow's CPU flag the session runs an XLA cluster
    if and only if xla is asked for; without it, xla is refused."""
    result = run("-c", XLA_PROBE.format(xla=xla), TF_XLA_FLAGS=flags)
    if flags is None:
        assert result.returncode == 1
        assert result.stderr.strip().endswith(
            "nothing would be compiled"), result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert (int(result.stdout.split()[-1]) > 0) == xla, result.stdout


@pytest.mark.subprocess
def test_the_xla_flag_compiles():
    result = run("-m", "resnet.resnet_run", "--depth", "8", "--epochs", "1",
                 "--no-progress", "--xla", "--verbose", TF_XLA_FLAGS=None,
                 TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stderr
    assert "Compiled cluster using XLA" in result.stderr


@pytest.mark.subprocess
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="oneDNN's default is changed on x86 only")
@pytest.mark.parametrize("setting, enabled", [(None, True), ("0", False)])
def test_importing_resnet_first_turns_onednn_on_unless_told(setting, enabled):
    """On every x86 CPU, AVX2-only ones included (TensorFlow's default
    leaves oneDNN off there); TF_ENABLE_ONEDNN_OPTS=0 is left as it is."""
    code = ("import resnet, tensorflow; "
            "from resnet.runtime.session_config import onednn_enabled; "
            "print(onednn_enabled())")
    result = run("-c", code, TF_ENABLE_ONEDNN_OPTS=setting)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(enabled)


THREADS_PROBE = """
import tensorflow as tf
from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.data import datasets
from resnet.runtime.session_config import session_config
digits = datasets.load("digits")
for intra in (1, 2):
    ConvolutionNN(models.resnet(8, 10), digits, progress=False,
                  session_config=session_config(intra, 2)).close()
    print(tf.config.threading.get_intra_op_parallelism_threads())
"""


@pytest.mark.subprocess
def test_a_runner_gives_the_process_its_threads_before_the_graph():
    """Building the input pipeline's map starts TensorFlow's eager context,
    which fixes the threads every later session runs its ops on: the
    runner makes them its session's first. A second runner that asks for
    others cannot have them, and says so."""
    result = run("-c", THREADS_PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["1", "1"], result.stdout
    assert result.stderr.count("ops run on") == 1, result.stderr
    assert ("ops run on 1 intra-op threads (TensorFlow fixed them before "
            "this session), not the 2 asked for") in result.stderr
    # Started with its defaults (0: a thread per core), the eager context
    # has what a large step asks for: nothing to say.
    result = run("-c", THREADS_PROBE.replace(
        "for intra in (1, 2):", "tf.data.Dataset.range(2).map(abs)\n"
        "for intra in (None,):"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "0", result.stdout
    assert "ops run on" not in result.stderr, result.stderr


def test_the_private_tensorflow_names_we_use_still_exist():
    """Each private TensorFlow name the code relies on (no public one
    does the job), so that an upgrade that drops one fails here, by
    name, not deep in a run."""
    import tensorflow as tf
    from tensorflow.python.framework import config
    from tensorflow.python.ops import collective_ops
    from tensorflow.python.util import _pywrap_util_port
    assert callable(_pywrap_util_port.IsMklEnabled)      # onednn_enabled
    assert callable(config.is_op_determinism_enabled)    # parallel_calls
    assert callable(tf.Operation._add_control_inputs)    # optimization.train_op
    assert callable(collective_ops.all_reduce)           # replicas
