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


def sweep(results, summary):
    """The arms of a sweep over the norms' group size, {norm: [(group
    size, arm name)] sorted}, from results.json's "arms" (their
    "microbatch"); {} unless some norm has two sizes or more."""
    points = {}
    for name, arm in results.get("arms", {}).items():
        # i.i.d. groups only: non-i.i.d. ones are another experiment's.
        if (name in summary and arm.get("microbatch")
                and not arm.get("classes_per_group")):
            points.setdefault(arm["norm"], []).append((arm["microbatch"],
                                                       name))
    return ({norm: sorted(named) for norm, named in points.items()}
            if any(len(named) > 1 for named in points.values()) else {})


MEANINGFUL_LOSS = 0.005  # accuracy: a loss a recovered fraction is given for


def sweep_table(results, summary, roles):
    """A markdown table of a sweep: per group size, batch norm's and
    batch renorm's final accuracies, batch norm's diagnostics and the
    fraction of batch norm's loss against the baseline that batch renorm
    recovers there, where that loss is MEANINGFUL_LOSS or more ("" when no
    sweep)."""
    arms = sweep(results, summary)
    if not arms or not roles or roles.get("baseline") not in summary:
        return ""
    baseline = summary[roles["baseline"]]["mean"]
    by_size = {}
    for norm, named in arms.items():
        for size, name in named:
            by_size.setdefault(size, {})[norm] = summary[name]

    def cell(s):
        return f"{s['mean']:.4f} ± {s['std']:.4f}" if s else "–"

    lines = [f"full batch (batch norm): {cell(summary[roles['baseline']])}",
             "", "| group size | batch norm | batch renorm | recovered | "
             "batch norm, population statistics | batch norm, each test "
             "group's own statistics |", "| --- | --- | --- | --- | --- | "
             "--- |"]
    for size, arms_at in sorted(by_size.items()):
        norm, renorm = arms_at.get("batch_norm"), arms_at.get("batch_renorm")
        loss = baseline - norm["mean"] if norm else 0.0
        # A fraction of less than half a point is noise, not a recovery.
        recovered = (f"{(renorm['mean'] - norm['mean']) / loss:.0%}"
                     if renorm and loss >= MEANINGFUL_LOSS else
                     f"– (loss {loss * 100:.2f} points)")
        diagnostics = (norm or {}).get("diagnostics", {})
        lines.append(f"| {size} | {cell(norm)} | {cell(renorm)} | "
                     f"{recovered} | {cell(diagnostics.get('population'))} | "
                     f"{cell(diagnostics.get('batch'))} |")
    return "\n".join(lines) + "\n"


def plot_group_sizes(results, summary, roles, path):
    """Final test accuracy against the group size, a line per norm with
    its band (mean ± std over seeds), the baseline as a horizontal band,
    and batch norm evaluated with each test group's own statistics
    (dashed): as the Group Normalization paper's Figure 1 plots error
    against the batch per GPU."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.2))
    labels = {"batch_norm": "batch norm", "batch_renorm": "batch renorm"}
    for norm, named in sweep(results, summary).items():
        sizes = [size for size, _ in named]
        mean = np.array([summary[name]["mean"] for _, name in named])
        std = np.array([summary[name]["std"] for _, name in named])
        line, = axes.plot(sizes, mean, "o-", label=labels.get(norm, norm))
        axes.fill_between(sizes, mean - std, mean + std, alpha=0.2,
                          color=line.get_color())
        batch = [summary[name]["diagnostics"].get("batch") for _, name in named]
        if all(batch):
            axes.plot(sizes, [d["mean"] for d in batch], "--",
                      color=line.get_color(), alpha=0.7,
                      label=f"{labels.get(norm, norm)}, tested with each "
                      f"group's own statistics")
    base = summary.get((roles or {}).get("baseline"))
    if base:
        axes.axhline(base["mean"], color="grey", label=roles["baseline"])
        axes.axhspan(base["mean"] - base["std"], base["mean"] + base["std"],
                     color="grey", alpha=0.15)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({size for named in sweep(results, summary).values()
                            for size, _ in named}))
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_xlabel("examples per normalisation group (microbatch)")
    axes.set_ylabel("final test accuracy (inference mode)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


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
    if len(summary) > 4:  # beside the curves, not over them
        figure.set_size_inches(10, 4.5)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    else:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
