"""benchmarks/throughput.py: its paired ratios, and a tiny run end to end."""
import json
import types

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
