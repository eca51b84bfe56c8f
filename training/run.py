"""`python train.py`: from parsed arguments to a finished (or safely stopped) run."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from data import PreparedData, load_dataset
from infra.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path
from infra.device import Runtime, launched_by_torchrun, runtime_for
from infra.files import RunDirError, RunLock, make_run_dir, write_atomic
from model.scoring import exact_loss
from training.config import TrainArgs, TrainConfig, config_for_resume
from training.logger import Console, Logger, NullLogger, TensorBoardLogger
from training.optim import describe_optimizers
from training.trainer import Trainer

RUN_FILES = ("last.pt", "best.pt", "config.yaml")


def _resume_path(args: TrainArgs) -> Path:
    """--resume PATH (a checkpoint or run directory), or else out_dir: its last.pt."""
    try:
        return resolve_checkpoint_path(args.resume or args.config.out_dir, names=("last.pt",))
    except CheckpointError as e:
        raise CheckpointError(f"nothing to resume: {e}") from None


def _previous_run_files(out_dir: Path) -> list[Path]:
    files = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    return files + sorted(out_dir.glob("events.out.tfevents.*"))


def prepare_run(args: TrainArgs) -> tuple[TrainConfig, dict | None]:
    """The run's configuration and, for --resume, the checkpoint it continues from."""
    if args.resume is not None:
        path = _resume_path(args)
        checkpoint = load_checkpoint(path, map_location="cpu")
        return config_for_resume(checkpoint["config"], args.cli_values, path.parent), checkpoint
    return args.config, None


def claim_run_dir(out_dir: Path, fresh: bool, overwrite: bool, rt: Runtime) -> RunLock | None:
    """Rank 0 creates out_dir and locks it for this run; a fresh run refuses a directory that holds
    one unless overwrite, which deletes it. Every rank learns the outcome (one broadcast), so a
    refusal stops all of them cleanly. Returns the lock, held by rank 0 until the run ends."""
    lock, problem = None, None
    if rt.is_main:
        try:
            make_run_dir(out_dir)
            lock = RunLock(out_dir)
            lock.acquire()
            if fresh and any((out_dir / name).exists() for name in ("last.pt", "best.pt")):
                if not overwrite:
                    raise RunDirError(
                        f"{out_dir} already holds a run; continue it with --resume, or start "
                        "afresh with --overwrite (which deletes its checkpoints and TensorBoard "
                        "logs)"
                    )
                for path in _previous_run_files(out_dir):
                    path.unlink()
        except (RunDirError, OSError) as e:  # every rank must hear of it, or the others would hang
            problem = str(e)
            if lock is not None:
                lock.release()
    if rt.distributed:
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem is not None:
        raise RunDirError(problem if rt.is_main else f"rank 0 could not use {out_dir}")
    return lock


def run_training(args: TrainArgs) -> None:
    config, checkpoint = prepare_run(args)
    out_dir = Path(config.out_dir)
    with runtime_for(config.device, config.dtype) as runtime:
        lock = claim_run_dir(out_dir, checkpoint is None, args.overwrite, runtime)
        try:
            _train(args, config, checkpoint, runtime)
        finally:
            if lock is not None:
                lock.release()


def _train(args: TrainArgs, config: TrainConfig, checkpoint: dict | None, runtime: Runtime) -> None:
    out_dir = Path(config.out_dir)
    console = Console(enabled=runtime.is_main)
    if runtime.is_main:
        resolved = yaml.safe_dump(config.to_dict(), sort_keys=False)
        console.print(f"{'resuming' if checkpoint else 'config'} ({args.config_name}):")
        console.print("  " + resolved.rstrip().replace("\n", "\n  "))
        write_atomic(out_dir / "config.yaml", lambda tmp: tmp.write_text(resolved))
    # rank 0 downloads and prepares the data while the others wait, then they read it
    if not runtime.is_main:
        runtime.barrier()
    data = load_dataset(config.dataset, config.data_path, config.data_dir, say=console.print)
    if runtime.is_main:
        runtime.barrier()

    logger: Logger = NullLogger()
    if runtime.is_main and config.tensorboard:
        # on resume, TensorBoard drops what the stopped run logged after its checkpoint
        purge_step = checkpoint["iter_num"] + 1 if checkpoint else None
        logger = TensorBoardLogger(out_dir, purge_step=purge_step)
    try:
        trainer = Trainer(config, runtime, data, logger, console, checkpoint)
        if checkpoint is None:
            logger.hparams(config.to_dict(), ["loss/val", "loss/train"])
        describe(trainer, runtime, console)
        trainer.fit()
        if runtime.is_main:
            report_exact_val_loss(trainer, data, runtime, logger, console)
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
        f"{count(rt.world_size, 'process')}{', compiled' if cfg.compile else ''}"
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
    (model/scoring.py), beside the last random-window estimate."""
    with rt.autocast():
        nats, count = exact_loss(trainer.model, data.val)
    estimate = trainer.eval_losses.get("val")
    beside = f" (random-window estimate {estimate:.4f})" if estimate is not None else ""
    console.print(f"exact val loss {nats:.4f} over all {count:,} characters{beside}")
    logger.scalar("loss/val_exact", nats, trainer.iter_num)


def error_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""
