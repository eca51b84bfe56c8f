"""A hook that draws runs' curves while they train: `train(..., hooks=[LivePlot()])`."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any


class LivePlot:
    """One figure, redrawn as runs train: each run's training-batch loss every `every` steps
    (faint), the train (dashed) and val (solid) losses of every evaluation, and the learning rate
    (dotted, right axis); a colour per run, so runs given the same LivePlot share it. In Jupyter
    the figure is shown once and redrawn in place; elsewhere it is written to `path` as a PNG, or
    not drawn at all without one. Redrawing is throttled: it takes at most `budget` of the time
    since the first step (and the last step of a run is always drawn)."""

    def __init__(self, every: int = 25, path: str | Path | None = None, budget: float = 0.04):
        self.every, self.path, self.budget = every, path, budget
        # in a Jupyter (or Colab) kernel, which can show a figure in place and has imported IPython
        ipython = sys.modules.get("IPython")
        self.jupyter = ipython is not None and hasattr(ipython.get_ipython(), "kernel")
        self.runs: dict[str, dict[str, Any]] = {}
        self.began: float | None = None
        self.spent = 0.0  # seconds spent drawing
        self.shown = None  # the figure's display in the notebook

    def __call__(self, step: Any) -> None:
        if not self.jupyter and self.path is None:
            return
        curves = self.runs.setdefault(str(step.run.out_dir), {"batch": [], "lr": []})
        last = step.step >= step.run.config.max_iters
        if step.step % self.every == 0 or last:
            curves["batch"].append((step.step, step.loss))
            curves["lr"].append((step.step, step.lr))
        curves["history"] = step.run.history  # its evaluations: the losses at iteration 0 too
        now = time.perf_counter()
        self.began = self.began or now
        if last or self.spent <= self.budget * (now - self.began):
            self.draw()
            self.spent += time.perf_counter() - now

    def draw(self) -> None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 4.5))
        ax = figure.add_subplot()
        rates = ax.twinx()
        for i, (name, curves) in enumerate(self.runs.items()):
            colour = f"C{i % 10}"
            evaluations = [p for p in curves.get("history", []) if "val_loss" in p]
            if curves["batch"]:
                steps, losses = zip(*curves["batch"], strict=True)
                ax.plot(steps, losses, color=colour, alpha=0.3, linewidth=1)
                rates.plot(steps, [lr for _, lr in curves["lr"]], ":", color=colour, linewidth=1)
            if evaluations:
                steps = [p["iter"] for p in evaluations]
                last = f"{Path(name).name}: val {evaluations[-1]['val_loss']:.3f}"
                ax.plot(steps, [p["train_loss"] for p in evaluations], "--", color=colour)
                ax.plot(steps, [p["val_loss"] for p in evaluations], "-o", color=colour,
                        markersize=3, label=last)  # fmt: skip
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (nats per character)")
        rates.set_ylabel("learning rate (dotted)")
        ax.set_title("val: solid; train: dashed; training batches: faint", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=80)
        if self.jupyter:
            from IPython.display import Image, display

            if self.shown is None:
                self.shown = display(Image(png.getvalue()), display_id=True)
            else:
                self.shown.update(Image(png.getvalue()))
        else:
            Path(self.path).write_bytes(png.getvalue())
