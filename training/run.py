"""`python train.py`: from parsed arguments to a finished (or safely stopped) run."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

from data import load_dataset
from data.corpus import write_atomic
from training.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path
from training.config import TrainArgs, TrainConfig, config_for_resume
from training.logger import Console, Logger, NullLogger, TensorBoardLogger
from training.runtime import launched_by_torchrun, runtime_for
from training.trainer import Trainer

RUN_FILES = ("last.pt", "best.pt", "config.yaml")


class RunExistsError(Exception):
    """out_dir already holds a run, and neither --resume nor --overwrite was given."""


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
    """The run's configuration and, for --resume, the checkpoint it continues from. Refuses to
    start a fresh run over an existing one unless --overwrite."""
    if args.resume is not None:
        path = _resume_path(args)
        checkpoint = load_checkpoint(path, map_location="cpu")
        return config_for_resume(checkpoint["config"], args.cli_values, path.parent), checkpoint
    out_dir = Path(args.config.out_dir)
    if any((out_dir / name).exists() for name in ("last.pt", "best.pt")) and not args.overwrite:
        raise RunExistsError(
            f"{out_dir} already holds a run; continue it with --resume, or start afresh with "
            "--overwrite (which deletes its checkpoints and TensorBoard logs)"
        )
    return args.config, None


def run_training(args: TrainArgs) -> None:
    config, checkpoint = prepare_run(args)
    out_dir = Path(config.out_dir)
    with runtime_for(config.device, config.dtype) as runtime:
        console = Console(enabled=runtime.is_main)
        if runtime.is_main:
            if args.overwrite and checkpoint is None:
                for path in _previous_run_files(out_dir):
                    path.unlink()
            out_dir.mkdir(parents=True, exist_ok=True)
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
            trainer.describe()
            trainer.fit()
            peak = ""
            if runtime.device.type == "cuda":
                peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            console.print(
                f"done: {trainer.iter_num} iterations, best val loss {trainer.best_val_loss:.4f}"
                f"{peak}; checkpoints in {out_dir}"
            )
        finally:
            logger.close()


def error_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""
