"""Where training's numbers go: a history (`Logger`), and TensorBoard (`TensorBoardLogger`)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.errors import describe_os_error
from infra.files import write_atomic
from viz.inspection import Histogram


@dataclass(frozen=True)
class Metric:
    """Where a scalar goes in TensorBoard: its tag, with the description the SCALARS tab shows."""

    tag: str
    description: str


# Every scalar a run records, by the name its history keeps it under. All go into the run
# directory's own event file, so a run is one entry of TensorBoard's run list and one colour on
# every chart; `loss` sorts first among the sections (TensorBoard orders them by the tag's first
# component), so the losses open the landing page.
METRICS = {
    "train_loss": Metric(
        "loss/train",
        "Mean cross-entropy in nats per character over `eval_iters` batches of the training "
        "split, dropout off, on the same windows at every point, so the curve moves only when "
        "the model does. An untrained model starts near ln 65 = 4.17.",
    ),
    "val_loss": Metric(
        "loss/val",
        "The same over windows of the validation split, text the model never trains on; its gap "
        "above the train curve is overfitting.",
    ),
    "val_loss_exact": Metric(
        "loss/val_exact",
        "Once, at the end: every character of the validation split scored with a full context "
        "window, as `evaluate.py` does; the estimate above it uses random windows.",
    ),
    "batch_loss": Metric(
        "loss/train_batch",
        "The loss of the latest training batch at each log point: noisy, and free to record.",
    ),
    "lr": Metric(
        "optimizer/lr",
        "The learning rate: learning_rate times the schedule (AdamW's, for the whole model).",
    ),
    "muon_lr": Metric(
        "optimizer/muon_lr",
        "Muon's rate for the matrices inside the blocks: muon_lr_ratio times the one above.",
    ),
    "grad_norm": Metric(
        "optimizer/grad_norm",
        "The gradient norm before clipping at `grad_clip`; spikes warn of instability.",
    ),
    "tokens_per_sec": Metric("speed/tokens_per_sec", "Training throughput, evaluation excluded."),
    "mfu": Metric(
        "speed/mfu",
        "Model FLOP utilisation: the model's FLOPs per second over the GPU's peak bf16 FLOP/s.",
    ),
}

# TensorBoard's CUSTOM SCALARS tab: a run's train, val and val_exact losses on one chart, the
# training batches on another. Regular expressions, anchored.
LAYOUT = {
    "loss": {
        "train, val and val_exact": ["Multiline", ["^loss/(train|val|val_exact)$"]],
        "training batches": ["Multiline", ["^loss/train_batch$"]],
    }
}

PROJECTOR_DIR = "projector"  # the embedding at each evaluation: one TSV file per iteration
PROJECTOR_CONFIG = "projector_config.pbtxt"


class Logger:
    """Every scalar into `history` (the Run's) and nothing else: ranks but 0, --no-tensorboard."""

    active = False  # False: nothing but the history is recorded, so nothing need be drawn for it

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def scalar(self, name: str, value: float, step: int) -> None:
        """One point of a scalar named in METRICS."""
        if not self.history or self.history[-1]["iter"] != step:
            self.history.append({"iter": step})
        self.history[-1][name] = value
        self.write_scalar(METRICS[name], value, step)

    def write_scalar(self, metric: Metric, value: float, step: int) -> None: ...
    def text(self, tag: str, text: str, step: int) -> None: ...
    def image(self, tag: str, pixels: np.ndarray, step: int) -> None: ...  # (H, W, 3) uint8
    def histogram(self, tag: str, histogram: Histogram, step: int) -> None: ...
    def embedding(self, matrix: torch.Tensor, labels: Sequence[str], step: int) -> None: ...
    def hparams(self, hparams: dict[str, Any], metric_names: list[str]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class TensorBoardLogger(Logger):
    """Event files in log_dir: one run of TensorBoard's. purge_step, on resume the step the run goes
    on from, drops what the interrupted run logged there or later: no step twice. A failed write (a
    full disk) is one warning line, and the run goes on: its checkpoints matter more than curves."""

    active = True

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: when used

        super().__init__()
        _quiet_writer_thread()
        self.log_dir = Path(log_dir)
        # TensorBoard reads a run's event files in name order: the second a file was opened, then
        # a counter that sorts as text. A resume in the second of the stopped run's file (from
        # Python, in one process) waits for the next, so its purge sees that file first.
        while purge_step and any(f.name.split(".")[3] == str(int(time.time()))
                                 for f in self.log_dir.glob("events.out.tfevents.*")):  # fmt: skip
            time.sleep(0.05)

        def start() -> None:
            self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)
            self.writer.add_custom_scalars(LAYOUT)

        self._safely(start)

    def _safely(self, write: Callable[[], object]) -> None:
        if not self.active:
            return
        try:
            write()
        except OSError as e:
            self.active = False
            line = (
                f"warning: TensorBoard stopped writing into {self.log_dir} "
                f"({describe_os_error(e)}); training goes on without its curves"
            )
            with contextlib.suppress(OSError):
                print(line, file=sys.stderr, flush=True)

    def write_scalar(self, metric: Metric, value: float, step: int) -> None:
        """With its description (TensorBoard keeps the description of a tag's first point;
        every point carries it, so a resumed run's do too)."""
        from torch.utils.tensorboard.summary import scalar

        summary = scalar(metric.tag, value, new_style=True)
        summary.value[0].metadata.summary_description = metric.description
        self._safely(lambda: self.writer.file_writer.add_summary(summary, step))

    def text(self, tag: str, text: str, step: int) -> None:
        # TensorBoard renders text as Markdown; indenting makes it a code block, kept verbatim
        indented = "\n".join("    " + line for line in text.splitlines())
        self._safely(lambda: self.writer.add_text(tag, indented, step))

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        self._safely(lambda: self.writer.add_image(tag, pixels, step, dataformats="HWC"))

    def histogram(self, tag: str, histogram: Histogram, step: int) -> None:
        self._safely(
            lambda: self.writer.add_histogram_raw(tag, **asdict(histogram), global_step=step)
        )

    def embedding(self, matrix: torch.Tensor, labels: Sequence[str], step: int) -> None:
        """The rows of matrix for the PROJECTOR tab as projector/NNNNN.tsv, one label each (a label
        must hold no tab or newline), then the list of them all (`projector_config`)."""
        folder = self.log_dir / PROJECTOR_DIR
        rows = matrix.detach().float().cpu().tolist()
        tensors = "".join("\t".join(f"{x:.6g}" for x in row) + "\n" for row in rows)
        names = "".join(label + "\n" for label in labels)

        def write() -> None:
            folder.mkdir(exist_ok=True)
            # rewritten each time: a directory left by a killed run may hold another vocabulary's
            write_atomic(folder / "labels.tsv", lambda tmp: tmp.write_text(names))
            write_atomic(folder / f"{step:05d}.tsv", lambda tmp: tmp.write_text(tensors))
            config = projector_config(self.log_dir)
            write_atomic(self.log_dir / PROJECTOR_CONFIG, lambda tmp: tmp.write_text(config))

        self._safely(write)

    def hparams(self, hparams: dict[str, Any], metric_names: list[str]) -> None:
        """Hyperparameters, and metric_names (METRICS keys) as the HPARAMS tab's metrics, into this
        run's own event file (SummaryWriter.add_hparams would open a second, timestamped run)."""
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        plain = {
            k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in hparams.items()
        }
        metrics = {METRICS[name].tag: None for name in metric_names}  # torch takes only the keys
        experiment, start, end = hparams_summaries(plain, metrics)
        plugin_data = experiment.value[0].metadata.plugin_data
        data = HParamsPluginData.FromString(plugin_data.content)
        for info, name in zip(data.experiment.metric_infos, metric_names, strict=True):
            info.display_name = name  # the tab's column is named as the history names it
        plugin_data.content = data.SerializeToString()
        for summary in (experiment, start, end):
            self._safely(lambda summary=summary: self.writer.file_writer.add_summary(summary))

    def flush(self) -> None:
        self._safely(lambda: self.writer.flush())

    def close(self) -> None:
        self._safely(lambda: self.writer.close())


def projector_config(log_dir: Path) -> str:
    """The PROJECTOR's list of embeddings: one per projector/NNNNN.tsv in log_dir, the latest
    first. The projector sorts the names and opens on the first: the latest is "…, latest", and
    a comma sorts before the colon of the others, in plain and in locale order alike."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    steps = sorted(
        (int(p.stem) for p in (log_dir / PROJECTOR_DIR).glob("*.tsv") if p.stem.isdigit()),
        reverse=True,
    )
    config = ProjectorConfig()
    for i, step in enumerate(steps):
        name = f"embedding, latest (iteration {step})" if i == 0 else (
            f"embedding: iteration {step:05d}"
        )  # fmt: skip
        config.embeddings.add(
            tensor_name=name,
            tensor_path=f"{PROJECTOR_DIR}/{step:05d}.tsv",
            metadata_path=f"{PROJECTOR_DIR}/labels.tsv",
        )
    return text_format.MessageToString(config)


def tensorboard_files(run_dir: Path) -> list[Path]:
    """Every file a TensorBoardLogger wrote into run_dir, for a fresh run that replaces it."""
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    files += sorted((run_dir / PROJECTOR_DIR).glob("*.tsv"))
    return files + [p for p in [run_dir / PROJECTOR_CONFIG] if p.exists()]


def _quiet_writer_thread() -> None:
    """TensorBoard writes from a thread of its own, which on a failed write prints a traceback
    before re-raising the error in the main thread at the next write. The main thread's logger
    reports it in one line (above), so the thread's traceback is left out."""
    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and "AsyncWriter" in type(args.thread).__name__:
            return
        previous(args)

    hook.quiets_tensorboard = True
    threading.excepthook = hook
