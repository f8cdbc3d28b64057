"""``training_curve.png``: training loss per step and, on a second axis, one validation metric; and
``pareto.png``: the points of a merge ratio search (``zoo merge --search``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.io import atomic_write

PLOT_FILE = "training_curve.png"


def plot_training_curve(records: Sequence[dict[str, Any]], path: Path, metric: str | None = None) -> Path:
    """Plot the step records of ``metrics.jsonl``; ``metric`` defaults to the first validation metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if "step" in r]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    validated = [r for r in steps if r.get("validation")]
    if validated:
        metric = metric or next(iter(validated[0]["validation"]))
        metric_axis = loss_axis.twinx()
        metric_axis.plot(
            [r["step"] for r in validated], [r["validation"].get(metric) for r in validated], "o-", color="tab:orange"
        )
        metric_axis.set_ylabel(f"validation {metric}", color="tab:orange")
    loss_axis.set_title("fine-tuning")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path


def plot_merge_pareto(
    points: Sequence[dict[str, Any]], path: Path, target_label: str, retain_label: str, retain_floor: float | None = None
) -> Path:
    """Retain score against target score of a merge ratio search (the ``points`` of ``merge_search.json``):
    uniform averaging as a line with its alphas labelled, searched ratios as dots, the Pareto front circled
    and joined by the edge of the region it dominates, the forgetting bound dashed and the chosen point as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    uniform = sorted((p for p in points if p["source"] == "uniform"), key=lambda p: p["alpha"])
    axis.plot([p["target"] for p in uniform], [p["retain"] for p in uniform], "o-", color="tab:blue",
              label="uniform averaging")
    labels: dict[tuple[float, float], list[str]] = {}  # alphas that land on one spot share one label
    for p in uniform:
        labels.setdefault((p["target"], p["retain"]), []).append(f"{p['alpha']:g}")
    for spot, alphas in labels.items():
        axis.annotate("α=" + ", ".join(alphas), spot, textcoords="offset points", xytext=(4, 4), fontsize=8,
                      color="tab:blue")
    searched = [p for p in points if p["source"] != "uniform"]
    if searched:
        axis.scatter([p["target"] for p in searched], [p["retain"] for p in searched], s=18, color="tab:gray",
                     alpha=0.7, label="searched ratios")
    front = sorted((p for p in points if p.get("pareto")), key=lambda p: (p["target"], -p["retain"]))
    axis.step([p["target"] for p in front], [p["retain"] for p in front], where="pre", color="tab:green",
              linewidth=2, alpha=0.8)
    axis.scatter([p["target"] for p in front], [p["retain"] for p in front], s=70, facecolors="none",
                 edgecolors="tab:green", linewidths=1.5, label="Pareto front")
    if retain_floor is not None:
        axis.axhline(retain_floor, color="tab:red", linestyle="--", linewidth=1, label="forgetting bound")
    chosen = [p for p in points if p.get("chosen")]
    if chosen:
        axis.scatter([chosen[0]["target"]], [chosen[0]["retain"]], marker="*", s=250, color="tab:orange",
                     edgecolors="black", zorder=5, label="chosen")
    axis.set_xlabel(target_label)
    axis.set_ylabel(retain_label)
    axis.set_title("merge ratio search")
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path
