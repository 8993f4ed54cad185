"""benchmarks.throughput: its paired ratios, and a tiny run end to end."""
import json
import types

import pytest

from benchmarks import throughput


def fake_case(seconds, **key):
    defaults = dict(depth=20, norm="batch_norm", batch=8, input="synthetic",
                    mode="train")
    return types.SimpleNamespace(seconds=seconds, key={**defaults, **key})


def test_ratios_pair_round_by_round():
    bn = fake_case([1.0, 2.0, 4.0])
    brn = fake_case([1.1, 2.4, 4.0], norm="batch_renorm")
    brn_pipe = fake_case([1.65, 2.4, 4.4], norm="batch_renorm",
                         input="pipeline")
    pairs = {(p["input"], p["ratio"]): p["step_time_ratio"]
             for p in throughput.ratios([bn, brn, brn_pipe])}
    # Rounds 1.1/1, 2.4/2, 4/4: median 1.1, although the rates' medians
    # (2 and 2.4 s) would give 1.2.
    assert pairs[("synthetic", "batch_renorm/batch_norm")] == (1.1, 1.0, 1.2)
    assert pairs[("pipeline", "pipeline/synthetic")] == (1.1, 1.0, 1.5)
    # No batch norm case read through the pipeline: nothing to pair with.
    assert ("pipeline", "batch_renorm/batch_norm") not in pairs
    assert len(pairs) == 2


@pytest.mark.slow
def test_tiny_run_prints_every_case_and_pair(capsys):
    throughput.main(["--depth", "8", "--batch", "4", "--images", "8",
                     "--repeats", "2", "--norm", "batch_norm", "batch_renorm",
                     "--precision", "float32"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    cases = [line for line in lines if "images_per_second" in line]
    pairs = [line for line in lines if "step_time_ratio" in line]
    assert {(c["norm"], c["input"], c["mode"]) for c in cases} == {
        (norm, "synthetic", mode) for norm in ("batch_norm", "batch_renorm")
        for mode in ("train", "inference")} | {
        (norm, "pipeline", "train") for norm in ("batch_norm", "batch_renorm")}
    for case in cases:
        assert case["repeats"] == 2 and case["steps"] == 2
        assert 0 < case["min"] <= case["images_per_second"] <= case["max"]
    assert sorted((p["ratio"], p["input"], p["mode"]) for p in pairs) == [
        ("batch_renorm/batch_norm", "pipeline", "train"),
        ("batch_renorm/batch_norm", "synthetic", "inference"),
        ("batch_renorm/batch_norm", "synthetic", "train"),
        ("pipeline/synthetic", "pipeline", "train"),
        ("pipeline/synthetic", "pipeline", "train")]
    for pair in pairs:
        median, low, high = pair["step_time_ratio"]
        assert 0 < low <= median <= high


def test_peers_targets_take_the_fastest_peer_round_by_round(capsys):
    """Ratios per round against the fastest peer (by median rate); ours
    under the other oneDNN setting is not a peer, nor at fixed threads,
    which are held against our default threads."""
    from benchmarks import peers

    def running(peer, norm, seconds, threads=1):
        case = peers.Running.__new__(peers.Running)
        case.key = {"peer": peer, "norm": norm, "threads": threads}
        case.batch, case.steps = 128, 4
        case.seconds = {"train": seconds, "infer": seconds}
        return case

    kept = {("ours", "batch_renorm"): running("ours", "batch_renorm", [1.0, 1.0, 2.0]),
            ("ours", "batch_norm"): running("ours", "batch_norm", [1.0, 0.9, 2.0]),
            ("ours_onednn_off", "batch_renorm"): running(
                "ours_onednn_off", "batch_renorm", [0.5, 0.5, 0.5], None),
            ("ours_2x1", "batch_renorm"): running(
                "ours_2x1", "batch_renorm", [0.9, 1.0, 2.1], "2x1"),
            ("ours_1x2", "batch_renorm"): running(
                "ours_1x2", "batch_renorm", [1.5, 1.5, 2.5], "1x2"),
            # The default again: its resolution, not a fixed setting.
            ("ours_auto", "batch_renorm"): running(
                "ours_auto", "batch_renorm", [0.8, 0.8, 1.6], "auto"),
            ("torch", "batch_norm"): running("torch", "batch_norm", [1.3, 1.1, 2.2]),
            ("keras3", "batch_renorm"): running("keras3", "batch_renorm", [2.0, 1.8, 3.0])}
    peers.check_targets({(128, "float32"): kept})
    lines = capsys.readouterr().out.splitlines()
    train = {line.split(": ", 1)[1] for line in lines if line.startswith("train")}
    # renorm/norm per round: 1, 1.111, 1 -> median 1.0
    assert ("our batch renorm / batch norm, step time 1.000 [1.000, 1.111]; "
            "target <= 1.05: met") in train
    # torch is the fastest peer: 1.3, 1.1, 1.1 -> 1.1
    assert ("our batch renorm / fastest peer (torch batch_norm), speed 1.100 "
            "[1.100, 1.300]; target >= 1.0: met") in train
    # Per round, 2x1 against the default: 0.9, 1.0, 1.05 -> 1.0; 1x2:
    # 1.5, 1.5, 1.25 -> 1.5.
    assert ("our default threads / the worst-for-it fixed setting (2x1), "
            "speed 1.000 [0.900, 1.050]; target >= 0.97: met") in train
    assert ("our default threads / the same again (the method's "
            "resolution), speed 0.800 [0.800, 0.800]") in train
    assert len(train) == 4  # batch 8's targets: no batch-8 group


def test_our_thread_settings_are_read_as_intra_x_inter():
    import argparse
    from benchmarks import peers
    assert peers._threads("2x1") == "2x1"
    assert peers._threads("02x3") == "2x3"
    assert peers._threads("auto") == "auto"  # the default, again
    for text in ("2", "0x1", "2x", "ax1", "1x-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="INTRAxINTER"):
            peers._threads(text)


@pytest.mark.slow
def test_tiny_loop_run_times_convolution_nn_train(capsys):
    throughput.main(["--loop", "--depth", "8", "--batch", "4", "--images",
                     "8", "--repeats", "2", "--norm", "batch_renorm",
                     "--precision", "float32"])
    line, = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert (line["depth"], line["norm"], line["batch"]) == (8, "batch_renorm", 4)
    median, low, high = line["train/compute speed"]
    assert 0 < low <= median <= high
    assert line["train_images_per_second"] > 0
    assert line["compute_images_per_second"] > 0


def test_resnet20_flops_are_tensorflows_count_of_the_network():
    """The fraction-of-peak column's FLOPs per image: the convolutions' and
    the dense layer's, as TensorFlow's profiler counts them in our graph."""
    import tensorflow as tf
    from benchmarks import peers
    from resnet import models
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        models.resnet(20, 10, norm=None)(
            tf1.placeholder(tf.float32, [1, 32, 32, 3]), training=False)
        options = tf1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf1.profiler.profile(graph, options=options)
    counted = sum(op.total_float_ops for op in profile.children
                  if op.name.endswith(("Conv2D", "MatMul")))
    assert peers.resnet20_flops("infer") == counted == 81_102_080
    # Training, by hand: forward, weight gradient, and the input gradient
    # of every layer but the first (32 * 32 * 27 * 16 multiply-adds):
    # 3 * 81,102,080 - 2 * 442,368.
    assert peers.resnet20_flops("train") == 242_421_504


def test_a_peer_process_answers_its_peak_memory(monkeypatch, capsys):
    """"memory" between blocks answers the process's peak resident memory
    (MiB), at least what it holds now (/proc, VmRSS), and times nothing."""
    import io
    from benchmarks import peers
    with open("/proc/self/status") as status:
        now_mib = next(int(line.split()[1]) for line in status
                       if line.startswith("VmRSS")) / 1024
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # then: the end
    peers.serve({"train": lambda: pytest.fail("timed a block")}, "memory")
    answer, = capsys.readouterr().out.split()
    # The kernel's counters lag a little (per-thread, synced in batches).
    assert 0.98 * now_mib <= float(answer) < 100 * 1024


@pytest.mark.slow
def test_tiny_run_reads_the_images_from_png_files(capsys):
    throughput.main(["--depth", "8", "--batch", "4", "--images", "8",
                     "--repeats", "2", "--norm", "batch_norm", "--input",
                     "synthetic", "files", "--mode", "train",
                     "--precision", "float32"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert {line["input"] for line in lines} == {"synthetic", "files"}
    pair, = [line for line in lines if "step_time_ratio" in line]
    assert pair["ratio"] == "files/synthetic"
