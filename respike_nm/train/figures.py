"""``training_curves.png`` of a run: loss and top-1 per epoch (matplotlib's object API, so a caller's
backend is left as it was; written atomically)."""

from __future__ import annotations

from pathlib import Path

from respike_nm.atomic import atomic_file


def plot_curves(history: list[dict], out: str | Path, title: str = "") -> Path:
    """Training loss (left) and train / test top-1 (right) against the epoch."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(8, 3))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_acc.plot(epochs, [row["train_top1"] for row in history], marker=".", label="train")
    tested = [row for row in history if "test_top1" in row]
    ax_acc.plot([row["epoch"] for row in tested], [row["test_top1"] for row in tested], marker="o",
                label="test")
    ax_acc.set(xlabel="epoch", ylabel="top-1", ylim=(0, 1.02))
    ax_acc.legend(loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=100)
    return Path(out)
