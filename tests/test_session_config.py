"""Session settings: threads sized to the step and the process's cores,
the CPU's flags under ONEDNN_MAX_CPU_ISA, and the layouts a CPU runs."""
import os

import pytest

from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.runtime.session_config import cpu_description, session_config


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

    assert threads() == (4, 2)
    # 8 * 32 * 32 pixels per core at most: half the cores per op.
    assert threads(batch_size=32, image_shape=(32, 32, 3)) == (2, 2)
    assert threads(batch_size=33, image_shape=(32, 32, 3)) == (4, 2)
    assert threads(batch_size=512, image_shape=(8, 8, 1)) == (2, 2)
    assert threads(batch_size=8, image_shape=(32, 32, 3), intra_threads=3,
                   inter_threads=1) == (3, 1)
    with pytest.raises(ValueError, match="inter_threads must be"):
        session_config(inter_threads=0)


def test_onednn_isa_limit_removes_the_flags_above_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA (how a benchmark runs an AVX2-only CPU's kernels
    on an AVX-512 one) takes its flags away, and bfloat16 with them."""
    from resnet.runtime import cpu
    every = set(cpu.SPEED_FLAGS)
    monkeypatch.setattr(cpu, "cpuinfo", lambda key: " ".join(every))
    for limit, want in (("", every), ("ALL", every),
                        ("AVX512_CORE_AMX", every),
                        ("AVX512_CORE_BF16", every - {"amx_bf16"}),
                        ("avx512_core", {"avx2", "avx512f"}),
                        ("AVX2", {"avx2"}), ("AVX2_VNNI", {"avx2"}),
                        ("SSE41", set())):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
        assert cpu.cpu_flags() == want, limit
    assert not cpu.has_bfloat16()
    assert "oneDNN limited by ONEDNN_MAX_CPU_ISA=SSE41" in cpu_description()
    assert session_config().graph_options.rewrite_options \
        .auto_mixed_precision_onednn_bfloat16 == 0  # float32 under the limit


def test_channels_first_needs_onednn_or_a_gpu(digits, monkeypatch):
    monkeypatch.setattr("resnet.runtime.session_config.onednn_enabled", lambda: False)
    network = models.resnet(8, 10, data_format="NCHW")
    with pytest.raises(ValueError, match="NCHW needs a GPU, or oneDNN"):
        ConvolutionNN(network, digits)
