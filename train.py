"""Train a character-level GPT: `python train.py --config small.yaml` (see --help), or from Python:

    from train import train
    run = train("small.yaml", max_iters=300, hooks=[print])

The whole run, top to bottom: set-up (the config, the run directory, the data, the model and
optimizers), the loop (a step; a log line every log_interval; an evaluation and a checkpoint every
eval_interval; the hooks), the end (the exact validation loss). The pieces it calls:
training/trainer.py (the state, the step, the clock), training/evaluation.py (evaluation),
training/rundir.py (which directory a run may write into), training/stopping.py (signals).

Exit codes: 0 done; 1 a problem with the data, device, checkpoint or run directory; 2 a mistake
in the configuration; 128 + the signal's number when a signal stopped it (130 for SIGINT, 143 for
SIGTERM, 129 for SIGHUP), after saving last.pt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from checkpoint import LAST
from data import load_dataset
from infra.device import launched_by_torchrun
from infra.errors import DeviceError, run_main
from infra.files import write_atomic
from infra.progress import progress
from model.scoring import exact_loss
from training.command_line import load_config, parse_command_line
from training.config import DATA_PATH_KEYS
from training.console import Console
from training.distributed import StepReport, agree_at_log_point, runtime_for
from training.evaluation import evaluate, probe_pictures
from training.logger import Logger, TensorBoardLogger
from training.mfu import flops_per_token, peak_flops
from training.optim import describe_optimizers
from training.run import Hook, Run, Step, StopTraining
from training.rundir import (
    CONFIG_FILE,
    CONFIG_HEADER,
    QuitNow,
    RunDirectory,
    prepare_run,
    resume_command,
)
from training.stopping import SignalCatcher, check_finite
from training.trainer import Trainer
from viz.figures import AttentionPictures

__all__ = ["Run", "Step", "StopTraining", "train"]


def train(
    config: str | Path | None = None,
    *,
    hooks: Sequence[Hook] = (),
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> Run:
    """Train a GPT; return the run (its model, tokenizer, losses and history).

    config: a YAML file, as a path or a name in configs/ (default small.yaml; on resume, the
    checkpoint's). settings: keys of a config (max_iters=300, learning_rate=3e-3,
    out_dir="auto", ...) on top of the file's. resume: True for the run in out_dir, or a run
    directory or checkpoint to continue. overwrite: start afresh where a run is. hooks: functions
    called after every step with a Step; StopTraining raised in one ends the run there. Ctrl-C
    (a notebook's interrupt) saves last.pt and returns the run so far. A mistake in the
    settings is a ConfigError, raised before any work.
    """
    # ---- set-up. Everything that can refuse the run (the config, the checkpoint to resume, the
    # device, the data, the model's size) is checked before out_dir is created or changed.
    args = load_config(config, resume, overwrite, **settings)
    config, checkpoint, notes = prepare_run(args)
    runtime_context = runtime_for(config.device, config.dtype, config.dist_timeout)
    with runtime_context as runtime, RunDirectory(Path(config.out_dir), runtime) as run_dir:
        console = Console(enabled=runtime.is_main)
        for note in notes:
            console.print(note)
        if not runtime.is_main:  # rank 0 prepares the data while the others wait, then they read
            runtime.barrier()
        data = load_dataset(config.dataset, config.data_path, config.data_dir, say=console.print)
        if runtime.is_main:
            runtime.barrier()
        trainer = Trainer(config, runtime, data, console, checkpoint, run_dir.discard_replaced)
        pictures = probe_pictures(config, data)
        # out_dir is this run's from here: locked, and an --overwrite's old run set aside until
        # the new run's first checkpoint
        run_dir.claim(fresh=checkpoint is None, overwrite=overwrite, say=console.print)
        logger = start_logs(config, runtime.is_main, console, checkpoint, args.config_name)
        run = Run(config, trainer.model, data.tokenizer, logger.history, trainer.iter_num,
                  trainer.best_val_loss)  # fmt: skip
        try:
            describe(trainer)
            loop(trainer, logger, pictures, run, hooks)
            # ---- the end
            if run.stopped:
                say_how_to_continue(run, runtime.world_size)
            else:
                if runtime.is_main:
                    run.val_loss_exact = report_exact_val_loss(trainer, logger)
                peak = ""
                if runtime.device.type == "cuda":
                    peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                console.print(
                    f"done: {trainer.iter_num} iterations, best val loss "
                    f"{trainer.best_val_loss:.4f}{peak}; checkpoints in {config.out_dir}"
                )
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop (exact pass)
            raise QuitNow(Path(config.out_dir)) from None
        except RuntimeError as e:  # torch.OutOfMemoryError on a GPU, a plain one on the CPU
            if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
                raise
            raise DeviceError(
                f"out of {runtime.device.type} memory at iteration {trainer.iter_num}: make "
                "batch_size, block_size or the model smaller"
            ) from None
        finally:
            logger.close()
    run.model.eval()  # ready to sample from
    return run


def loop(
    trainer: Trainer, logger: Logger, pictures: AttentionPictures, run: Run, hooks: Sequence[Hook]
) -> None:
    """Train until max_iters. After each step: a log line every log_interval, an evaluation and a
    checkpoint every eval_interval (the losses alone every loss_interval), then the hooks. A
    signal (SIGINT, SIGTERM, SIGHUP) takes effect at the next log point, where the ranks meet, as
    does a hook's StopTraining under torchrun (at once in one process): every rank saves last.pt
    and the run ends, its `stopped` saying why."""
    config, console, rt = trainer.config, trainer.console, trainer.runtime
    hook_stop = False
    with SignalCatcher(console.print) as signals:
        console.start_bar(total=config.max_iters, initial=trainer.iter_num)
        trainer.clock.start(trainer.iter_num)
        try:
            if trainer.iter_num == 0:  # the curves' first point: the untrained model's losses
                evaluate(trainer, logger, pictures)
            while trainer.iter_num < config.max_iters:
                loss, grad_norm = trainer.train_step()
                console.update_bar(1)
                stop = False
                if trainer.due(config.log_interval):
                    asked = signals.signum is not None or hook_stop
                    report = agree_at_log_point(loss, grad_norm, asked, rt)
                    check_finite(report, trainer.iter_num, not trainer.scaler.is_enabled())
                    log(trainer, logger, report)
                    stop = report.stop_requested
                evaluation = None
                if trainer.due(config.eval_interval):
                    evaluation = evaluate(trainer, logger, pictures)
                elif config.loss_interval and trainer.due(config.loss_interval):
                    evaluation = evaluate(trainer, logger, pictures, extras=False)
                run.iter_num, run.best_val_loss = trainer.iter_num, trainer.best_val_loss
                if hooks:
                    lr = trainer.optimizers[0].param_groups[0]["lr"]
                    step = Step(trainer.iter_num, lr, trainer.model, evaluation, run, loss)
                    hook_stop = call_hooks(hooks, step, trainer) or hook_stop
                    stop = stop or (hook_stop and not rt.distributed)
                if stop and trainer.iter_num < config.max_iters:
                    if not trainer.due(config.eval_interval):  # an evaluation saved it already
                        trainer.save()
                    run.signal = signals.signum or (None if hook_stop else signal.SIGTERM)
                    run.stopped = signal.Signals(run.signal).name if run.signal else "StopTraining"
                    return
        finally:
            console.close_bar()
            trainer.background.wait()  # the last checkpoint is on disk before the run goes on
            logger.flush()


def call_hooks(hooks: Sequence[Hook], step: Step, trainer: Trainer) -> bool:
    """Each hook in order; True when one raised StopTraining. Any other exception is the hook's
    own (the caller's code): the run saves last.pt and the exception goes on up, as it was."""
    try:
        for hook in hooks:
            hook(step)
    except StopTraining:
        return True
    except Exception:
        if not trainer.runtime.distributed:  # saving meets the other ranks, who are not coming
            trainer.save()
            trainer.background.wait()
        raise
    return False


def log(trainer: Trainer, logger: Logger, report: StepReport) -> None:
    """The log point's scalars to TensorBoard; a line, or the bar's postfix, to the console."""
    rt, config, step = trainer.runtime, trainer.config, trainer.iter_num
    tokens_per_sec = trainer.clock.tokens_per_sec()
    rates = [optimizer.param_groups[0]["lr"] for optimizer in trainer.optimizers]
    logger.scalar("batch_loss", report.loss, step)
    logger.scalar("lr", rates[0], step)  # AdamW's: learning_rate times the schedule
    if len(rates) > 1:
        logger.scalar("muon_lr", rates[1], step)
    logger.scalar("grad_norm", report.grad_norm, step)
    logger.scalar("tokens_per_sec", tokens_per_sec, step)
    peak, mfu_text = peak_flops(rt.device, rt.dtype), ""
    if peak:
        mfu = flops_per_token(trainer.model, config.block_size) * tokens_per_sec / peak
        logger.scalar("mfu", mfu, step)
        mfu_text = f", mfu {100 * mfu:.1f}%"
    progress = f"loss {report.loss:.4f}, lr {rates[0]:.2e}, {tokens_per_sec:,.0f} tok/s{mfu_text}"
    if trainer.console.bar is not None:  # the bar shows the time left
        trainer.console.update_bar(0, postfix=progress)
    else:
        left = trainer.clock.time_left(step, config.max_iters)
        trainer.console.print(f"iter {step}: {progress}, {left} left")


def start_logs(
    config, is_main: bool, console: Console, checkpoint: dict | None, config_name: str
) -> Logger:
    """Rank 0 prints the resolved config and writes it to out_dir/config.yaml, and opens the
    TensorBoard log (on resume, TensorBoard drops what the stopped run logged after its
    checkpoint). Every rank keeps its history."""
    if not is_main:
        return Logger()
    resolved = yaml.safe_dump(config.to_dict(), sort_keys=False)
    console.print(f"resuming {config.out_dir}:" if checkpoint else f"config ({config_name}):")
    console.print("  " + resolved.rstrip().replace("\n", "\n  "))
    text = f"{CONFIG_HEADER}\n{resolved}"
    write_atomic(Path(config.out_dir) / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    if not config.tensorboard:
        return Logger()
    purge_step = checkpoint["iter_num"] + 1 if checkpoint else 0
    logger = TensorBoardLogger(Path(config.out_dir), purge_step=purge_step)
    if checkpoint is None:
        logger.hparams(config.to_dict(), ["val_loss", "val_loss_exact", "train_loss"])
    return logger


def describe(trainer: Trainer) -> None:
    """The start-up lines: where and in what precision it runs (and why), the model's size, and
    the tokens one optimizer step sees."""
    cfg, rt, say = trainer.config, trainer.runtime, trainer.console.print

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"

    reason = f" ({rt.dtype_reason})" if rt.dtype_reason else ""
    say(
        f"device {rt.device}, autocast {str(rt.dtype).removeprefix('torch.')}{reason}, "
        f"{count(rt.world_size, 'process')}, "
        f"{'compiled' if trainer.compiled else 'eager'} ({trainer.compile_reason})"
    )
    say(f"model: {trainer.model.num_params() / 1e6:.2f}M parameters")
    say(f"optimizer: {describe_optimizers(trainer.optimizers)}")
    say(
        f"tokens per iteration: {count(trainer.accum_steps, 'micro-step')} x "
        f"{count(rt.world_size, 'process')} x {cfg.batch_size} batch x {cfg.block_size} "
        f"block = {trainer.tokens_per_iter:,}"
    )


def report_exact_val_loss(trainer: Trainer, logger: Logger) -> float:
    """Once, at the end of a run: the loss over every character of the validation split
    (model/scoring.py), or of its first exact_max_chars on a split longer than that (the cost
    stays bounded on a large text), beside the last random-window estimate."""
    val, rt = trainer.data.val, trainer.runtime

    def scoring(batches):
        return progress(batches, len(batches), "exact val loss", unit="batch")

    cap, total = trainer.config.exact_max_chars, val.numel() - 1
    tokens = val[: cap + 1] if cap and total > cap else val
    with rt.autocast():
        nats, count = exact_loss(trainer.model, tokens, progress=scoring)
    estimate = trainer.eval_losses.get("val")
    beside = f" (random-window estimate {estimate:.4f})" if estimate is not None else ""
    scope = f"all {count:,}" if count == total else f"the first {count:,} of {total:,}"
    trainer.console.print(f"exact val loss {nats:.4f} over {scope} characters{beside}")
    logger.scalar("val_loss_exact", nats, trainer.iter_num)
    return nats


def say_how_to_continue(run: Run, world_size: int) -> None:
    """One line on stderr, from every process: why the run stopped, what it saved, and the
    command that continues it (from Python too, in one process)."""
    config = run.config
    how = resume_command(config, world_size)
    if not launched_by_torchrun():
        paths = "".join(
            f", {key}={getattr(config, key)!r}" for key in DATA_PATH_KEYS if getattr(config, key)
        )
        how += f" (in Python: train(resume={config.out_dir!r}{paths}))"
    line = (
        f"{rank_prefix()}stopped by {run.stopped} at iteration {run.iter_num}; saved "
        f"{Path(config.out_dir) / LAST}. Continue with: {how}"
    )
    with contextlib.suppress(OSError):  # nobody reads stderr any more: the run is saved
        print(line, file=sys.stderr, flush=True)


def rank_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""


def main(argv: list[str] | None = None) -> int:
    """The command line: its options parsed into train()'s arguments."""

    def from_command_line(argv: list[str] | None) -> int:
        run = train(**parse_command_line(argv))
        return 128 + run.signal if run.signal else 0

    return run_main(from_command_line, argv, prog="train.py", prefix=rank_prefix)


if __name__ == "__main__":
    sys.exit(main())
