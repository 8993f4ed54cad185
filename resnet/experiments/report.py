"""An experiment's results as numbers, a table and a plot: per arm the
final test accuracies over seeds (mean, std with ddof 1), the diagnostics,
the fraction batch renorm recovers, and the curves with their band."""
import numpy as np


def summarize(results, arm_names):
    """{arm: {"final": [per seed], "mean", "std", "diagnostics", "steps",
    "curve_mean", "curve_std", "renorm_schedule"}}: the finals are each
    run's last point; the curves' band is over the steps every seed has
    (the last one included: a non-i.i.d. epoch's length may differ by a
    batch between seeds)."""
    summary = {}
    for name in arm_names:
        runs = [r for r in results["runs"].values() if r["arm"] == name]
        if not runs:
            continue
        final = np.array([r["curve"][-1]["test_accuracy"] for r in runs])
        steps = sorted(set.intersection(*(
            {p["step"] for p in r["curve"][:-1]} for r in runs)))
        curves = np.array([
            [p["test_accuracy"] for p in r["curve"] if p["step"] in steps]
            + [r["curve"][-1]["test_accuracy"]] for r in runs])
        steps.append(runs[0]["curve"][-1]["step"])
        # The sample standard deviation (ddof = 1); 0 for a single seed.
        ddof = 1 if len(runs) > 1 else 0
        diagnostics = {
            key: [r["diagnostics"][key] for r in runs]
            for key in runs[0].get("diagnostics", {})}
        summary[name] = {"final": final.tolist(), "mean": float(final.mean()),
                         "std": float(final.std(ddof=ddof)),
                         "diagnostics": {
                             key: {"final": values,
                                   "mean": float(np.mean(values)),
                                   "std": float(np.std(values, ddof=ddof))}
                             for key, values in diagnostics.items()},
                         "steps": steps,
                         "curve_mean": curves.mean(axis=0).tolist(),
                         "curve_std": curves.std(axis=0, ddof=ddof).tolist(),
                         "renorm_schedule": runs[0].get("renorm_schedule")}
    return summary


DIAGNOSTICS = {"population": "population statistics recomputed over the "
                              "training set",
               "batch": "batch statistics of test groups built alike"}


def recovered(summary, roles):
    """The fraction of batch norm's loss against the baseline that batch
    renorm recovers, from the arms' mean final accuracies, or None."""
    try:
        baseline, norm, renorm = (summary[roles[key]]["mean"] for key in
                                  ("baseline", "batch_norm", "batch_renorm"))
    except (KeyError, TypeError):
        return None
    return (renorm - norm) / (baseline - norm) if baseline != norm else None


def table(summary, setup, roles=None):
    lines = ["| arm | final test accuracy (mean ± std, ddof 1) | per seed |",
             "| --- | --- | --- |"]
    for name, s in summary.items():
        seeds = ", ".join(f"{a:.4f}" for a in s["final"])
        lines.append(f"| {name} | {s['mean']:.4f} ± {s['std']:.4f} | {seeds} |")
        for key, d in s.get("diagnostics", {}).items():
            seeds = ", ".join(f"{a:.4f}" for a in d["final"])
            lines.append(f"| {name}, evaluated with {DIAGNOSTICS[key]} | "
                         f"{d['mean']:.4f} ± {d['std']:.4f} | {seeds} |")
    fraction = recovered(summary, roles)
    footer = ("" if fraction is None else
              f"\nbatch renorm recovers {fraction:.0%} of batch norm's loss "
              f"against {roles['baseline']}\n")
    return (f"{setup.dataset}, ResNet-{setup.depth}, batch {setup.batch_size}, "
            f"{setup.epochs} epochs, {len(setup.seeds)} seeds\n\n"
            + "\n".join(lines) + "\n" + footer)


def plot(results, arm_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    summary = summarize(results, arm_names)
    for name, s in summary.items():
        mean, std = np.array(s["curve_mean"]), np.array(s["curve_std"])
        axes.plot(s["steps"], mean, label=name)
        axes.fill_between(s["steps"], mean - std, mean + std, alpha=0.2)
    ramp = next((s["renorm_schedule"] for s in summary.values()
                 if s.get("renorm_schedule")), None)
    if ramp:  # where rmax and dmax grow (batch renorm's arms)
        end = max(ramp["rmax_steps"], ramp["dmax_steps"])
        axes.axvspan(ramp["warmup_steps"], end, color="grey", alpha=0.12,
                     label=f"renorm ramp (steps {ramp['warmup_steps']}-{end})")
    axes.set_xlabel("training step")
    axes.set_ylabel("test accuracy (inference mode)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
