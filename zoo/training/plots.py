"""``training_curve.png``: training loss per step and, on a second axis, one validation metric."""

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
