"""Arms x seeds of an experiment: train each, record test accuracy over
training steps, and write a JSON of every curve, a markdown table of final
accuracies (mean +- std over seeds) and a PNG plot to an output folder,
with TensorBoard logs of each run under it.

Runs already recorded in the output's results.json are not run again, so an
interrupted experiment picks up where it stopped.

Typical use (see examples/renorm_microbatch.py):
    arms = [Arm("batch norm", "batch_norm"),
            Arm("batch renorm, microbatches of 4", "batch_renorm", microbatch=4)]
    run(arms, Setup(dataset="fashion_mnist", epochs=10), "results/microbatch")
"""
import dataclasses
import json
import logging
import os
from typing import Optional

import numpy as np

from batch_renorm.schedule import scaled_schedule
from resnet import datasets, models
from resnet.convolution_nn import ConvolutionNN
from resnet.hooks import LastValuesHook

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration compared: its norm and how its batches are made."""
    name: str
    norm: Optional[str]
    microbatch: Optional[int] = None         # microbatches of the norms
    classes_per_batch: Optional[int] = None  # non-i.i.d. batches


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every arm shares."""
    dataset: str = "fashion_mnist"
    depth: int = 8
    batch_size: int = 128
    epochs: int = 10
    train_images: Optional[int] = None  # a stratified subset, for quick runs
    learning_rate: float = 0.1
    norm_momentum: float = 0.99         # alpha = 0.01, the paper's
    seeds: tuple = (0, 1, 2)


def run(arms, setup, out_dir, data_dir=None):
    """Runs every arm with every seed; returns the results dict."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    results = _load(path, setup)
    ds = _dataset(setup, data_dir)
    for arm in arms:
        for seed in setup.seeds:
            key = f"{arm.name} / seed {seed}"
            if key in results["runs"]:
                log.info("%s: done already", key)
                continue
            log.info("%s: training", key)
            results["runs"][key] = dict(arm=arm.name, seed=seed,
                                        curve=_train(arm, setup, ds, seed,
                                                     out_dir))
            with open(path, "w") as f:  # after every run: nothing is lost
                json.dump(results, f, indent=1)
    summary = summarize(results, [arm.name for arm in arms])
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(table(summary, setup))
    plot(results, [arm.name for arm in arms],
         os.path.join(out_dir, "accuracy.png"))
    return results


def _load(path, setup):
    setup_dict = json.loads(json.dumps(dataclasses.asdict(setup)))
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
        if results.get("setup") == setup_dict:
            return results
        log.warning("%s is of another setup: starting afresh", path)
    return {"setup": setup_dict, "runs": {}}


def _dataset(setup, data_dir):
    ds = datasets.load(setup.dataset, data_dir)
    if setup.train_images:
        # A stratified subset: the first images of a fixed shuffle, by class.
        order = np.random.RandomState(0).permutation(len(ds.x_train))
        per_class = setup.train_images // ds.num_classes
        keep = np.concatenate([order[ds.y_train[order] == c][:per_class]
                               for c in range(ds.num_classes)])
        ds = dataclasses.replace(ds, x_train=ds.x_train[keep],
                                 y_train=ds.y_train[keep])
    return ds


def _train(arm, setup, ds, seed, out_dir):
    steps_per_epoch = -(-len(ds.x_train) // setup.batch_size)
    total = setup.epochs * steps_per_epoch
    network = models.resnet(setup.depth, ds.num_classes, norm=arm.norm,
                            norm_momentum=setup.norm_momentum,
                            microbatch=arm.microbatch,
                            renorm_schedule=scaled_schedule(total))
    run_dir = os.path.join(out_dir, "runs",
                           f"{arm.name}-seed{seed}".replace(" ", "_")
                           .replace(",", "").replace("/", "_"))
    with ConvolutionNN(network, ds, learning_rate=setup.learning_rate,
                       lr_boundaries=(total // 2, total * 3 // 4),
                       model_dir=run_dir, seed=seed, progress=False,
                       classes_per_batch=arm.classes_per_batch) as cnn:
        # At each evaluation, the batch renorm layers' clipping too (the
        # fractions of r and d at their bounds, mean r and |d|).
        renorm = LastValuesHook(cnn.train_graph.renorm)
        history = cnn.train(setup.batch_size, setup.epochs - cnn.epochs_done,
                            hooks=[renorm, cnn.evaluation_hook(every_epochs=1)])
    curve = [{"step": epoch["step"], "test_accuracy": epoch["test_accuracy"],
              "train_accuracy": epoch["accuracy"],
              **{key: epoch[key] for key in renorm.tensors}}
             for epoch in history]
    return curve


def summarize(results, arm_names):
    """{arm: {"final": [per seed], "mean", "std", "steps", "curves"}}."""
    summary = {}
    for name in arm_names:
        runs = [r for r in results["runs"].values() if r["arm"] == name]
        if not runs:
            continue
        curves = np.array([[p["test_accuracy"] for p in r["curve"]]
                           for r in runs])
        final = curves[:, -1]
        summary[name] = {"final": final.tolist(), "mean": float(final.mean()),
                         "std": float(final.std()),
                         "steps": [p["step"] for p in runs[0]["curve"]],
                         "curve_mean": curves.mean(axis=0).tolist(),
                         "curve_std": curves.std(axis=0).tolist()}
    return summary


def table(summary, setup):
    lines = ["| arm | final test accuracy (mean ± std) | per seed |",
             "| --- | --- | --- |"]
    for name, s in summary.items():
        seeds = ", ".join(f"{a:.4f}" for a in s["final"])
        lines.append(f"| {name} | {s['mean']:.4f} ± {s['std']:.4f} | {seeds} |")
    return (f"{setup.dataset}, ResNet-{setup.depth}, batch {setup.batch_size}, "
            f"{setup.epochs} epochs, {len(setup.seeds)} seeds\n\n"
            + "\n".join(lines) + "\n")


def plot(results, arm_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, s in summarize(results, arm_names).items():
        mean, std = np.array(s["curve_mean"]), np.array(s["curve_std"])
        axes.plot(s["steps"], mean, label=name)
        axes.fill_between(s["steps"], mean - std, mean + std, alpha=0.2)
    axes.set_xlabel("training step")
    axes.set_ylabel("test accuracy (inference mode)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
