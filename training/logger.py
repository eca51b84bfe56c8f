"""Where training reports go. Metrics go through one small interface (TensorBoard or nothing);
the console shows a tqdm bar on a terminal and plain lines otherwise."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from infra.errors import describe_os_error

# TensorBoard's CUSTOM SCALARS tab: train and validation loss on one chart, so that the gap
# between them (overfitting) is the first thing to see.
LAYOUT = {
    "loss": {
        # regular expressions: anchored, or loss/train would take loss/train_step in too
        "train and validation": ["Multiline", ["^loss/train$", "^loss/val$", "^loss/val_exact$"]],
        "training batches": ["Multiline", ["^loss/train_step$"]],
    }
}


class Logger(Protocol):
    active: bool  # False: nothing is recorded, so nothing need be computed for it

    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def text(self, tag: str, text: str, step: int) -> None: ...
    def figure(self, tag: str, figure: Any, step: int) -> None: ...
    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...
    def embedding(self, matrix: torch.Tensor, labels: Sequence[str], step: int) -> None: ...
    def hparams(self, hparams: dict[str, Any], metric_tags: list[str]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class NullLogger:
    """Records nothing: for other ranks than 0, tests, and `--no-tensorboard`."""

    active = False

    def scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def figure(self, tag: str, figure: Any, step: int) -> None:
        pass

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        pass

    def embedding(self, matrix: torch.Tensor, labels: Sequence[str], step: int) -> None:
        pass

    def hparams(self, hparams: dict[str, Any], metric_tags: list[str]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in log_dir, one run.

    purge_step: on resume, the step the run continues from. TensorBoard then drops whatever the
    interrupted run had logged at that step or later, so no step appears twice.

    A write that fails (a full disk, a file-size limit) is one warning line, and the run goes on
    without TensorBoard: its checkpoints matter more than its curves.
    """

    active = True

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

        _quiet_writer_thread()
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self._safely(lambda: self.writer.add_custom_scalars(LAYOUT))

    def _safely(self, write: Callable[[], object]) -> None:
        if not self.active:
            return
        try:
            write()
        except OSError as e:
            self.active = False
            _warn(
                f"warning: TensorBoard stopped writing into {self.log_dir} "
                f"({describe_os_error(e)}); training goes on without its curves"
            )

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._safely(lambda: self.writer.add_scalar(tag, value, step))

    def text(self, tag: str, text: str, step: int) -> None:
        # TensorBoard renders text as Markdown; indenting makes it a code block, kept verbatim
        indented = "\n".join("    " + line for line in text.splitlines())
        self._safely(lambda: self.writer.add_text(tag, indented, step))

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self._safely(lambda: self.writer.add_figure(tag, figure, step, close=False))

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self._safely(lambda: self.writer.add_histogram(tag, values.detach().float().cpu(), step))

    def embedding(self, matrix: torch.Tensor, labels: Sequence[str], step: int) -> None:
        """Rows of matrix for the PROJECTOR tab, one label each (tab-separated files, so a label
        must not hold a tab or a newline)."""
        rows = matrix.detach().float().cpu()
        self._safely(
            lambda: self.writer.add_embedding(
                rows, metadata=list(labels), global_step=step, tag="wte"
            )
        )

    def hparams(self, hparams: dict[str, Any], metric_tags: list[str]) -> None:
        """Hyperparameters into this run's own event file. SummaryWriter.add_hparams would open a
        second, timestamped run beside it; writing the three hparams summaries directly does not."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        plain = {
            k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in hparams.items()
        }
        for summary in hparams_summaries(plain, {tag: 0.0 for tag in metric_tags}):
            self._safely(lambda summary=summary: self.writer.file_writer.add_summary(summary))

    def flush(self) -> None:
        self._safely(self.writer.flush)

    def close(self) -> None:
        self._safely(self.writer.close)


def _warn(line: str) -> None:
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


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


def mute(stream) -> None:
    """Send whatever is still written to stream (sys.stdout or sys.stderr) to /dev/null: its
    reader is gone (a closed pipe, a closed terminal), and the run must go on without it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's capture): nothing to mute
        pass


class Console:
    """Prints for rank 0 only. On a terminal, a tqdm bar tracks iterations and log lines print
    above it; elsewhere (CI, a file) the bar is off and log lines are plain. When the reader of
    the output goes away (`train.py | head`, a closed terminal), the output is dropped and the
    run goes on."""

    def __init__(self, enabled: bool = True, interactive: bool | None = None) -> None:
        self.enabled = enabled
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar: tqdm | None = None

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            if self.bar is not None:
                tqdm.write(message, file=sys.stdout)
            else:
                print(message, flush=True)
        except OSError:  # EPIPE, or EIO from a closed terminal
            mute(sys.stdout)

    def start_bar(self, total: int, initial: int) -> None:
        if self.enabled and self.interactive:
            # a short bar, and tokens/s in the postfix instead of it/s, leave room on narrow screens
            layout = "{l_bar}{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, bar_format=layout)

    def update_bar(self, n: int = 1, postfix: str | None = None) -> None:
        if self.bar is not None:
            try:
                self.bar.update(n)
                if postfix is not None:
                    self.bar.set_postfix_str(postfix, refresh=False)
            except OSError:  # the terminal is gone: no bar from here on
                mute(sys.stderr)
                self.bar = None

    def close_bar(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:
                mute(sys.stderr)
            self.bar = None
