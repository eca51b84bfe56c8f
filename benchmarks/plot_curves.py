"""Plot validation loss against wall-clock time and against tokens, from runs' TensorBoard files.

    python benchmarks/time_to_loss.py --config cpu_fast --target 1.886 --keep runs/
    python benchmarks/plot_curves.py runs/* --out loss_curves.png

Draws with matplotlib, which the requirements install (it also draws the attention maps).
Time is measured from the moment each run opened its TensorBoard writer (about two seconds after
the process started, once torch was imported and the data loaded).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import common  # noqa: F401  (makes the project importable)
import yaml
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from infra.cli import option, parse_into
from infra.errors import ConfigError, run_main


@dataclass(frozen=True)
class PlotOptions:
    runs: tuple[str, ...] = option(help="run directories (with event files)", positional=True)
    out: str = option("loss_curves.png", "the PNG to write")
    target: float = option(1.886, "a horizontal reference line")
    title: str = option("Tiny Shakespeare, 2-core CPU", "the figure's title")


def load_run(run_dir: Path) -> tuple[str, list[float], list[float], list[float]]:
    """(config name, seconds, tokens, val losses) of one run directory: its `val` run's `loss`,
    timed from the run's first event."""
    main, val_run = (EventAccumulator(str(d)) for d in (run_dir, run_dir / "val"))
    main.Reload()
    val_run.Reload()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    tokens_per_iter = (
        config["gradient_accumulation_steps"] * config["batch_size"] * config["block_size"]
    )
    start = main.FirstEventTimestamp()
    val = val_run.Tensors("loss")
    name = run_dir.name.rsplit("-seed", 1)[0]
    return (
        name,
        [e.wall_time - start for e in val],
        [e.step * tokens_per_iter / 1e6 for e in val],
        [float(tensor_util.make_ndarray(e.tensor_proto)) for e in val],
    )


def main(argv: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args = parse_into(PlotOptions, argv, __doc__.split("\n")[0])

    for run_dir in map(Path, args.runs):
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"{run_dir} is not a run directory (no config.yaml): keep runs with "
                "time_to_loss.py --keep DIR, then pass DIR/*"
            )
    by_config = defaultdict(list)
    for run_dir in sorted(map(Path, args.runs)):
        name, seconds, tokens, losses = load_run(run_dir)
        by_config[name].append((seconds, tokens, losses))

    fig, (by_time, by_tokens) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (name, runs) in zip(colors, by_config.items(), strict=False):
        for i, (seconds, tokens, losses) in enumerate(runs):
            label = f"{name} ({len(runs)} seeds)" if i == 0 else None
            by_time.plot(seconds, losses, "o-", color=color, alpha=0.7, ms=3, label=label)
            by_tokens.plot(tokens, losses, "o-", color=color, alpha=0.7, ms=3, label=label)
    for ax, xlabel in ((by_time, "seconds of wall-clock time"), (by_tokens, "million tokens")):
        ax.axhline(args.target, color="gray", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylim(1.3, 3.0)
        ax.grid(alpha=0.3)
    by_time.set_ylabel("validation loss (nats per character)")
    by_time.legend()
    by_tokens.text(
        by_tokens.get_xlim()[1],
        args.target + 0.03,
        f"{args.target}: nanoGPT's CPU recipe at 2000 iterations ",
        color="gray",
        fontsize=8,
        ha="right",
    )
    fig.suptitle(args.title)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run_main(main, prog="plot_curves.py"))
