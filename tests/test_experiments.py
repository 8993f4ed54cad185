"""The batch renorm paper's experiments: the runner and the --quick modes."""
import json
import logging
import os
import runpy
import sys

import numpy as np
import pytest

from resnet.data import datasets
from resnet.experiments import Setup, report
from tests.conftest import (ROOT, assert_usage_error, assert_usage_line, run,
                            start)


def run_here(script, *args, monkeypatch):
    """The example `script` as `python examples/SCRIPT ARGS` would run it,
    in this process; returns its exit status."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [script, *args])
    try:
        runpy.run_path(os.path.join(ROOT, "examples", script),
                       run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


def test_summary_and_table_by_hand():
    results = {"runs": {
        "a / seed 0": {"arm": "a", "seed": 0, "curve": [
            {"step": 10, "test_accuracy": 0.5}, {"step": 20, "test_accuracy": 0.8}]},
        "a / seed 1": {"arm": "a", "seed": 1, "curve": [
            {"step": 10, "test_accuracy": 0.7}, {"step": 20, "test_accuracy": 0.6}]}}}
    summary = report.summarize(results, ["a", "absent"])
    assert list(summary) == ["a"]
    assert summary["a"]["final"] == [0.8, 0.6] and summary["a"]["steps"] == [10, 20]
    assert summary["a"]["mean"] == pytest.approx(0.7)
    assert summary["a"]["std"] == pytest.approx(0.1 * 2 ** 0.5)  # ddof 1
    np.testing.assert_allclose(summary["a"]["curve_mean"], [0.6, 0.7])
    text = report.table(summary, Setup(seeds=(0, 1)))
    assert "| a | 0.7000 ± 0.1414 | 0.8000, 0.6000 |" in text


def test_the_recovered_fraction_by_hand():
    def arm(final, **diagnostics):
        return {"mean": final, "diagnostics": {
            key: {"final": [value], "mean": value, "std": 0.0}
            for key, value in diagnostics.items()}, "final": [final],
            "std": 0.0}

    summary = {"iid": arm(0.90), "bn": arm(0.70, batch=0.85),
               "brn": arm(0.85)}
    roles = {"baseline": "iid", "batch_norm": "bn", "batch_renorm": "brn"}
    # (0.85 - 0.70) / (0.90 - 0.70)
    assert report.recovered(summary, roles) == pytest.approx(0.75)
    assert report.recovered(summary, dict(roles, baseline="absent")) is None
    assert report.recovered(summary, None) is None
    text = report.table(summary, Setup(seeds=(0,)), roles)
    assert "batch renorm recovers 75% of batch norm's loss against iid" in text
    assert ("| bn, evaluated with batch statistics of test groups built "
            "alike | 0.8500 ± 0.0000 | 0.8500 |") in text


def test_the_sweep_table_and_figure_by_hand(tmp_path):
    """Per group size: the means, the fraction recovered there (hand:
    (0.88 - 0.60) / (0.90 - 0.60) = 93%, (0.89 - 0.89) / (0.90 - 0.89) =
    0%; none for a loss under half a point) and batch norm's diagnostics;
    group_sizes.png written."""
    def run_of(arm, final, **diagnostics):
        return {"arm": arm, "seed": 0, "diagnostics": diagnostics,
                "curve": [{"step": 10, "test_accuracy": final}]}

    arms = {"full": {"norm": "batch_norm", "microbatch": None},
            "bn 1": {"norm": "batch_norm", "microbatch": 1},
            "brn 1": {"norm": "batch_renorm", "microbatch": 1},
            "bn 2": {"norm": "batch_norm", "microbatch": 2},
            "brn 2": {"norm": "batch_renorm", "microbatch": 2},
            "bn 4": {"norm": "batch_norm", "microbatch": 4},
            "brn 4": {"norm": "batch_renorm", "microbatch": 4}}
    finals = {"full": 0.90, "bn 1": 0.60, "brn 1": 0.88, "bn 2": 0.89,
              "brn 2": 0.89, "bn 4": 0.898, "brn 4": 0.85}
    results = {"arms": arms, "runs": {
        f"{name} / seed 0": run_of(name, final, **(
            {"population": 0.65, "batch": 0.89} if name.startswith("bn")
            else {})) for name, final in finals.items()}}
    summary = report.summarize(results, list(arms))
    roles = {"baseline": "full", "batch_norm": "bn 1",
             "batch_renorm": "brn 1"}
    assert report.sweep(results, summary) == {
        "batch_norm": [(1, "bn 1"), (2, "bn 2"), (4, "bn 4")],
        "batch_renorm": [(1, "brn 1"), (2, "brn 2"), (4, "brn 4")]}
    text = report.sweep_table(results, summary, roles)
    assert ("| 1 | 0.6000 ± 0.0000 | 0.8800 ± 0.0000 | 93% | 0.6500 ± 0.0000 "
            "| 0.8900 ± 0.0000 |") in text
    assert "| 2 | 0.8900 ± 0.0000 | 0.8900 ± 0.0000 | 0% |" in text
    assert ("| 4 | 0.8980 ± 0.0000 | 0.8500 ± 0.0000 | – (loss 0.20 "
            "points) |") in text
    report.plot_group_sizes(results, summary, roles,
                            str(tmp_path / "group_sizes.png"))
    assert (tmp_path / "group_sizes.png").read_bytes()[:4] == b"\x89PNG"
    one_size = {"arms": {k: v for k, v in arms.items() if k[-1] in "l1"},
                "runs": results["runs"]}
    assert report.sweep_table(one_size, summary, roles) == ""


needs_fashion = pytest.mark.skipif(
    not os.path.isdir(datasets.DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")


MICROBATCH_ARMS = ["batch norm, full batch", "batch norm, groups of 1",
                   "batch renorm, groups of 1"]
NON_IID_ARMS = ["batch norm, i.i.d. groups of 4",
                "batch norm, groups of 4 from 2 classes",
                "batch renorm, groups of 4 from 2 classes",
                "batch norm, halves of groups of 4 from 2 classes, pairs split"]


@needs_fashion
@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("script, arms, diagnostic", [
    ("renorm_microbatch.py", MICROBATCH_ARMS, "population"),
    ("renorm_non_iid.py", NON_IID_ARMS, "batch")])
def test_quick_mode_writes_curves_table_plot_and_logs(
        tmp_path, script, arms, diagnostic, monkeypatch, caplog, capsys):
    chosen = [f"--arm={arm}" for arm in arms]
    args = (os.path.join("examples", script), "--quick", "--out",
            str(tmp_path), *chosen)
    result = run(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert [r["arm"] for r in results["runs"].values()] == arms  # one seed
    assert results["provenance"]["commit"] and results["provenance"]["tensorflow"]
    assert results["roles"]["baseline"] == arms[0]
    assert results["roles"]["batch_norm"] == arms[1]
    assert results["roles"]["batch_renorm"] == arms[2]
    for r in results["runs"].values():
        # A point every 12 steps and one at the end, of 2 epochs of 24
        # batches (non-i.i.d. epochs may leave out what cannot fill one).
        steps = [p["step"] for p in r["curve"]]
        assert steps[:3] == [12, 24, 36] and 44 <= steps[-1] <= 48
        assert all(0.0 <= p["test_accuracy"] <= 1.0 for p in r["curve"])
    renorm = results["runs"][f"{arms[2]} / seed 0"]
    # short_run_schedule for 48 steps: held at r = 1, d = 0 (their
    # bounds) for 12 steps, then ramped up to step 24.
    assert renorm["renorm_schedule"]["warmup_steps"] == 12
    assert renorm["curve"][0]["r_clipped"] == renorm["curve"][0]["d_clipped"] == 1.0
    assert 0.0 <= renorm["curve"][-1]["r_clipped"] < 1.0
    assert renorm["curve"][-1]["d_abs_mean"] > 0.0
    baseline = results["runs"][f"{arms[0]} / seed 0"]
    assert "r_clipped" not in baseline["curve"][0]
    assert baseline["curve"][-1]["train_accuracy"] > 0.5  # it learnt
    norm = results["runs"][f"{arms[1]} / seed 0"]
    assert 0.0 <= norm["diagnostics"][diagnostic] <= 1.0
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {arm} |" in table for arm in arms)
    assert f"| {arms[1]}, evaluated with " in table
    assert "batch renorm recovers" in table
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "runs").glob("*/events.out.tfevents.*"))) == len(arms)
    # Run again (in this process): every run is recorded, none is trained
    # again.
    caplog.set_level(logging.INFO)
    assert run_here(script, *args[1:], monkeypatch=monkeypatch) == 0
    assert caplog.text.count("done already") == len(arms)
    # The full setup refuses the quick run's folder.
    capsys.readouterr()
    status = run_here(script, "--out", str(tmp_path), monkeypatch=monkeypatch)
    assert_usage_line(status, capsys.readouterr().err, "holds results of "
                      "another setup (eval_every: 12 there, 100 here",
                      prog=script)


@needs_fashion
@pytest.mark.slow
@pytest.mark.subprocess
def test_an_interrupted_run_keeps_its_curve(tmp_path):
    """Killed at step 36 (its last checkpoint: step 24, an epoch's end),
    the run resumes with the points it had up to its checkpoint, and ends
    with the curve of an uninterrupted run: a point every 12 steps."""
    args = (os.path.join("examples", "renorm_microbatch.py"), "--quick",
            "--arm", "batch norm, full batch", "--out")
    process = start(*args, str(tmp_path / "cut"), stdout=None)
    for line in process.stderr:
        if "step 36: curve test_accuracy" in line:
            process.kill()
            break
    process.wait()
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    partial = next(iter(cut["partial"].values()))
    assert [p["step"] for p in partial] == [12, 24, 36]
    resumed = run(*args, str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "restored checkpoint" in resumed.stderr
    curve = json.loads((tmp_path / "cut" / "results.json").read_text())[
        "runs"]["batch norm, full batch / seed 0"]["curve"]
    assert [p["step"] for p in curve] == [12, 24, 36, 48]
    assert curve[:2] == partial[:2]  # the points up to the checkpoint kept


@pytest.mark.parametrize("script, prog, args", [
    ("fashion_mnist_resnet.py", "resnet-run", ["--epochs", "1"]),
    ("renorm_non_iid.py", "renorm_non_iid.py", ["--quick", "--out", "OUT"])])
def test_example_scripts_without_their_data_say_so_in_one_line(
        tmp_path, script, prog, args):
    offline = "http://127.0.0.1:9"  # nothing listens there
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = run(os.path.join("examples", script), "--data-dir",
                 str(tmp_path / "none" / "here"), *args,
                 http_proxy=offline, https_proxy=offline,
                 TF_CPP_MIN_LOG_LEVEL=None)
    assert_usage_error(result, "put the file there by hand", prog=prog)
    # Nothing but that line: TensorFlow's start-up lines are kept off.
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()
    assert not (tmp_path / "none").exists()  # no folders left behind


@pytest.mark.slow
def test_one_experiment_per_output_folder(tmp_path):
    from resnet.storage.model_dir import DirectoryLock
    lock = DirectoryLock(str(tmp_path))
    result = run(os.path.join("examples", "renorm_microbatch.py"), "--quick",
                 "--out", str(tmp_path))
    lock.release()
    assert_usage_error(result, f"in use by another run (pid {os.getpid()}); "
                       f"wait for it to end or choose another --out",
                       prog="renorm_microbatch.py")
