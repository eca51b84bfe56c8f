"""`python train.py`: from parsed arguments to a finished (or safely stopped) run.

The order protects the user's runs: everything that can be checked (the config, the checkpoint to
resume, the device, the data, block_size against the data) is checked before the run directory is
touched. Only then is out_dir created and locked, an overwritten run's files removed, and the new
run's config written.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint_path,
)
from data import PreparedData, load_dataset
from infra.device import DeviceError, Runtime, launched_by_torchrun
from infra.errors import UserError
from infra.files import (
    RunDirError,
    RunLock,
    SetAside,
    make_run_dir,
    refuse_link,
    write_atomic,
)
from infra.progress import progress
from model.scoring import exact_loss
from training.config import (
    DATA_PATH_KEYS,
    TrainArgs,
    TrainConfig,
    config_for_resume,
    parse_args,
)
from training.console import Console
from training.logger import (
    PROJECTOR_CONFIG,
    PROJECTOR_DIR,
    RUN_NAMES,
    Logger,
    NullLogger,
    TensorBoardLogger,
    tensorboard_files,
)
from training.optim import describe_optimizers
from training.stopping import TrainingInterrupted, runtime_for
from training.trainer import Trainer

CONFIG_FILE = "config.yaml"
# the first line of every config.yaml train.py writes: a file without it is the user's
CONFIG_HEADER = "# written by train.py: the resolved configuration of the run in this directory"
RUN_FILES = (LAST, BEST, CONFIG_FILE)
SET_ASIDE = ".replaced"  # an overwritten run, until the run that replaces it has a checkpoint


def holds_run(out_dir: Path) -> bool:
    """Whether out_dir holds a run's checkpoint (False where it cannot even be looked at: the
    attempt to create it will say why)."""
    return any(os.path.isfile(out_dir / name) for name in (LAST, BEST))


def _previous_run_files(out_dir: Path) -> list[Path]:
    files = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    return files + tensorboard_files(out_dir)


def check_run_dir_entries(out_dir: Path) -> None:
    """Refuse a run directory where a file or folder of a run is a link (LinkError: nothing is
    written or deleted through one), or where a config.yaml that train.py did not write sits
    without a run (a user's own file is never overwritten)."""
    for name in (*RUN_FILES, PROJECTOR_DIR, PROJECTOR_CONFIG, *RUN_NAMES, SET_ASIDE):
        refuse_link(out_dir / name)
    config = out_dir / CONFIG_FILE
    if config.is_file() and not holds_run(out_dir):
        with open(config, encoding="utf-8", errors="replace") as f:
            first = f.readline()
        if first.rstrip("\n") != CONFIG_HEADER:
            raise RunDirError(
                f"{config} is not one train.py wrote, and a run never overwrites a file of "
                "yours: move it, or give another --out_dir"
            )


def restore_set_aside(aside: SetAside, out_dir: Path) -> list[Path]:
    """Put back the run that --overwrite set aside, removing what the new run wrote in its
    place (its config and TensorBoard files; it made no checkpoint)."""
    for path in _previous_run_files(out_dir):
        path.unlink()
    return aside.restore()


def prepare_run(args: TrainArgs) -> tuple[TrainConfig, dict | None, list[str]]:
    """The run's configuration, the checkpoint it continues from (None for a fresh run) and
    notes for the user. Refuses, before anything is written, every run that would change a run
    it does not own."""
    if args.resume is None:
        config = args.config
        out_dir = Path(config.out_dir)
        if holds_run(out_dir) and not args.overwrite:
            raise RunDirError(
                f"{out_dir} already holds a run; continue it with --resume, start afresh with "
                "--overwrite (which deletes its checkpoints and TensorBoard logs), or train beside "
                "it with --out_dir auto (a new directory named for the run)"
            )
        return config, None, []
    try:
        # last.pt, or best.pt where a full disk stopped the run between writing the two (best.pt
        # is written first, so it is then the newer)
        path = resolve_checkpoint_path(args.resume, names=(LAST, BEST))
    except CheckpointError as e:
        raise CheckpointError(f"nothing to resume: {e}") from None
    checkpoint = load_checkpoint(path, map_location="cpu")
    source_dir = path.parent.resolve()
    config, notes = config_for_resume(checkpoint["config"], args.cli_values, path.parent)
    out_dir = Path(config.out_dir)
    continues_in_place = out_dir.resolve() == source_dir
    if continues_in_place and path.name != LAST and (out_dir / LAST).exists():
        # continuing from best.pt in place would roll last.pt back and purge TensorBoard's
        # later steps: the later run would be lost
        last_iter = load_checkpoint(out_dir / LAST)["iter_num"]
        if last_iter != checkpoint["iter_num"]:
            new_dir = f"{out_dir}-from-{checkpoint['iter_num']}"
            raise RunDirError(
                f"resuming {path} (iteration {checkpoint['iter_num']}) in place would roll back "
                f"{out_dir / LAST} (iteration {last_iter}); continue it in a new directory: "
                f"python train.py --resume {shlex.quote(str(path))} --out_dir "
                f"{shlex.quote(new_dir)}"
            )
    if not continues_in_place and holds_run(out_dir):
        raise RunDirError(
            f"{out_dir} holds another run; a resumed run writes only into the run it continues "
            f"({path.parent}) or into a directory without a run: give another --out_dir"
        )
    if continues_in_place and path.name == LAST and (out_dir / BEST).is_file():
        notes += reconcile_best(checkpoint, out_dir / BEST)
    return config, checkpoint, notes


def reconcile_best(checkpoint: dict, best_path: Path) -> list[str]:
    """best.pt is written before last.pt, so a run that failed between the two leaves a best.pt
    newer than last.pt, holding a better loss than last.pt knows of. The resumed run takes that
    loss as the one to beat, so it never replaces best.pt by a worse model."""
    best = load_checkpoint(best_path)
    if best["best_val_loss"] >= checkpoint["best_val_loss"]:
        return []
    checkpoint["best_val_loss"] = best["best_val_loss"]
    return [
        f"note: {best_path} (iteration {best['iter_num']}, val {best['best_val_loss']:.4f}) is "
        f"newer than {best_path.parent / LAST} (iteration {checkpoint['iter_num']}): the run "
        "stopped between the two writes; it continues from last.pt and keeps best.pt"
    ]


def _decided_by_rank0(rt: Runtime, out_dir: Path, action) -> RunLock | None:
    """action() on rank 0, its refusal (a RunDirError or OSError) told to every rank in one
    broadcast, so that a refusal stops all of them cleanly instead of leaving some waiting."""
    result, problem = None, None
    if rt.is_main:
        try:
            result = action()
        except (RunDirError, OSError) as e:
            problem = str(e)
    if rt.distributed:
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem is not None:
        raise RunDirError(problem if rt.is_main else f"rank 0 could not use {out_dir}")
    return result


def lock_existing_run_dir(out_dir: Path, rt: Runtime) -> RunLock | None:
    """Where out_dir exists already, lock it at once, before any slow work: a second run aimed
    at a live run's directory is refused in a moment, and changes nothing there."""

    def lock() -> RunLock | None:
        if not os.path.isdir(out_dir):
            return None
        lock = RunLock(out_dir)
        lock.acquire()
        return lock

    return _decided_by_rank0(rt, out_dir, lock)


def claim_run_dir(
    out_dir: Path, fresh: bool, overwrite: bool, rt: Runtime, lock: RunLock | None, say
) -> tuple[RunLock | None, SetAside | None]:
    """Rank 0 creates out_dir and locks it for this run (unless it holds the lock already), and
    checks it (check_run_dir_entries). A fresh run with overwrite then sets the old run's files
    aside (returned): the new run takes its place, and the old one is restored if the new one
    fails before its first checkpoint. What a killed process left is settled first: temporary
    files removed, a run set aside restored (or discarded, where the run that replaced it made
    a checkpoint). Returns the lock, held by rank 0 until the run ends, and what was set aside."""

    def claim() -> tuple[RunLock, SetAside | None]:
        held, aside = lock, None
        try:
            if held is None:
                make_run_dir(out_dir)
                held = RunLock(out_dir)
                held.acquire()
            check_run_dir_entries(out_dir)
            left = SetAside(out_dir, SET_ASIDE)
            if left.folder.exists():
                if holds_run(out_dir):
                    left.discard()
                else:
                    restored = restore_set_aside(left, out_dir)
                    say(
                        f"note: restored the run an --overwrite set aside in {out_dir} "
                        f"({len(restored)} files): the run meant to replace it made no checkpoint"
                    )
            if fresh and holds_run(out_dir):
                if not overwrite:  # another run took the directory since the first check
                    raise RunDirError(f"{out_dir} already holds a run; give another --out_dir")
                aside = SetAside(out_dir, SET_ASIDE)
                aside.move(_previous_run_files(out_dir))
            remove_stale_temporaries(out_dir)
        except BaseException:
            if held is not None:
                held.release()
            raise
        return held, aside

    claimed = _decided_by_rank0(rt, out_dir, claim)
    return claimed if claimed is not None else (None, None)


class QuitNow(UserError):
    """Stopped at once (a second Ctrl-C): says what the run directory holds."""

    exit_code = 130
    label = ""

    def __init__(self, out_dir: Path) -> None:
        last = out_dir / LAST
        if last.is_file():
            held = f"{last} holds iteration {load_checkpoint(last)['iter_num']}"
        else:
            held = "no checkpoint was written yet"
        super().__init__(f"interrupted: stopped at once; {held}")


def resume_command(config: TrainConfig, world_size: int) -> str:
    """The command that continues this run, ready to paste: quoted, with the data's paths (a
    resume takes them from the command line only), and under torchrun when the run had several
    processes (the checkpoint holds every rank's random streams)."""
    launcher = "python"
    if launched_by_torchrun():
        launcher = f"torchrun --standalone --nproc_per_node={world_size}"
    paths = "".join(
        f" --{key} {shlex.quote(getattr(config, key))}"
        for key in DATA_PATH_KEYS
        if getattr(config, key)
    )
    return f"{launcher} train.py --resume {shlex.quote(config.out_dir)}{paths}"


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
    run_training(parse_args(argv))
