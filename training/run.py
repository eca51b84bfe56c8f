"""`python train.py`: from parsed arguments to a finished (or safely stopped) run.

The order protects the user's runs: everything that can be checked (the config, the checkpoint to
resume, the device, the data, block_size against the data) is checked before the run directory is
touched (training/rundir.py). Only then is out_dir created and locked, an overwritten run set
aside, and the new run's config written.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import yaml

from data import PreparedData, load_dataset
from infra.device import Runtime, launched_by_torchrun
from infra.errors import DeviceError
from infra.files import write_atomic
from infra.progress import progress
from model.scoring import exact_loss
from training.command_line import TrainArgs, load_config
from training.console import Console
from training.distributed import runtime_for
from training.logger import Logger, NullLogger, TensorBoardLogger
from training.optim import describe_optimizers
from training.rundir import (
    CONFIG_FILE,
    CONFIG_HEADER,
    QuitNow,
    claim_run_dir,
    holds_run,
    lock_existing_run_dir,
    prepare_run,
    restore_set_aside,
    resume_command,
)
from training.stopping import TrainingInterrupted
from training.trainer import Trainer


def run_training(args: TrainArgs) -> None:
    config, checkpoint, notes = prepare_run(args)
    out_dir = Path(config.out_dir)
    runtime_context = runtime_for(config.device, config.dtype, config.dist_timeout)
    with runtime_context as runtime, contextlib.ExitStack() as held:
        lock = lock_existing_run_dir(out_dir, runtime)
        if lock is not None:
            held.callback(lock.release)
        console = Console(enabled=runtime.is_main)
        for note in notes:
            console.print(note)
        # rank 0 downloads and prepares the data while the others wait, then they read it
        if not runtime.is_main:
            runtime.barrier()
        data = load_dataset(config.dataset, config.data_path, config.data_dir, say=console.print)
        if runtime.is_main:
            runtime.barrier()
        trainer = Trainer(config, runtime, data, console=console, checkpoint=checkpoint)
        claimed, aside = claim_run_dir(
            out_dir, checkpoint is None, args.overwrite, runtime, lock, console.print
        )
        if claimed is not None and claimed is not lock:
            held.callback(claimed.release)
        trainer.after_first_checkpoint = aside.discard if aside is not None else None
        try:
            _train(args, trainer, checkpoint, runtime, console)
        except TrainingInterrupted as e:
            resume = resume_command(config, runtime.world_size)
            raise TrainingInterrupted(e.signum, e.checkpoint, resume) from None
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop (exact pass)
            raise QuitNow(out_dir) from None
        except RuntimeError as e:  # torch.OutOfMemoryError on a GPU, a plain one on the CPU
            if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
                raise
            raise DeviceError(
                f"out of {runtime.device.type} memory at iteration {trainer.iter_num}: make "
                "batch_size, block_size or the model smaller"
            ) from None
        finally:
            if aside is not None and aside.folder.exists() and not holds_run(out_dir):
                restore_set_aside(aside, out_dir)  # the new run failed before a checkpoint


def _train(
    args: TrainArgs, trainer: Trainer, checkpoint: dict | None, runtime: Runtime, console: Console
) -> None:
    config, out_dir = trainer.config, trainer.out_dir
    if runtime.is_main:
        resolved = yaml.safe_dump(config.to_dict(), sort_keys=False)
        console.print(f"resuming {out_dir}:" if checkpoint else f"config ({args.config_name}):")
        console.print("  " + resolved.rstrip().replace("\n", "\n  "))
        text = f"{CONFIG_HEADER}\n{resolved}"
        write_atomic(out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(text))

    logger: Logger = NullLogger()
    if runtime.is_main and config.tensorboard:
        # on resume, TensorBoard drops what the stopped run logged after its checkpoint
        purge_step = checkpoint["iter_num"] + 1 if checkpoint else 0
        logger = TensorBoardLogger(out_dir, purge_step=purge_step)
    trainer.logger = logger
    try:
        if checkpoint is None:
            logger.hparams(config.to_dict(), ["loss/val", "loss/val_exact", "loss/train"])
        describe(trainer, runtime, console)
        trainer.fit()
        if runtime.is_main:
            report_exact_val_loss(trainer, trainer.data, runtime, logger, console)
        peak = ""
        if runtime.device.type == "cuda":
            peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        console.print(
            f"done: {trainer.iter_num} iterations, best val loss {trainer.best_val_loss:.4f}"
            f"{peak}; checkpoints in {out_dir}"
        )
    finally:
        logger.close()


def describe(trainer: Trainer, rt: Runtime, console: Console) -> None:
    """The start-up lines: where and in what precision it runs (and why), the model's size, and
    the tokens one optimizer step sees."""
    cfg = trainer.config

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"

    reason = f" ({rt.dtype_reason})" if rt.dtype_reason else ""
    console.print(
        f"device {rt.device}, autocast {str(rt.dtype).removeprefix('torch.')}{reason}, "
        f"{count(rt.world_size, 'process')}, "
        f"{'compiled' if trainer.compiled else 'eager'} ({trainer.compile_reason})"
    )
    console.print(f"model: {trainer.model.num_params() / 1e6:.2f}M parameters")
    console.print(f"optimizer: {describe_optimizers(trainer.optimizers)}")
    console.print(
        f"tokens per iteration: {count(trainer.accum_steps, 'micro-step')} x "
        f"{count(rt.world_size, 'process')} x {cfg.batch_size} batch x {cfg.block_size} "
        f"block = {trainer.tokens_per_iter:,}"
    )


def report_exact_val_loss(
    trainer: Trainer, data: PreparedData, rt: Runtime, logger: Logger, console: Console
) -> None:
    """Once, at the end of a run: the loss over every character of the validation split
    (model/scoring.py), or of its first exact_max_chars on a split longer than that (the cost
    stays bounded on a large text), beside the last random-window estimate."""

    def scoring(batches):
        return progress(batches, len(batches), "exact val loss", unit="batch")

    cap, total = trainer.config.exact_max_chars, data.val.numel() - 1
    tokens = data.val[: cap + 1] if cap and total > cap else data.val
    with rt.autocast():
        nats, count = exact_loss(trainer.model, tokens, progress=scoring)
    estimate = trainer.eval_losses.get("val")
    beside = f" (random-window estimate {estimate:.4f})" if estimate is not None else ""
    scope = f"all {count:,}" if count == total else f"the first {count:,} of {total:,}"
    console.print(f"exact val loss {nats:.4f} over {scope} characters{beside}")
    logger.scalar("loss/val_exact", nats, trainer.iter_num)


def rank_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""


def main(argv: list[str] | None = None) -> None:
    run_training(load_config(argv))
