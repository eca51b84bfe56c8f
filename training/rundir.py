"""A run directory belongs to its run: which run a command may write into (`prepare_run`), and
how it takes it (`RunDirectory`)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from checkpoint import (
    BEST,
    LAST,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint_path,
)
from infra.device import Runtime, launched_by_torchrun
from infra.errors import CheckpointError, RunDirError, UserError
from infra.files import RunLock, SetAside, make_run_dir, refuse_link
from training.command_line import TrainArgs, config_for_resume
from training.config import DATA_PATH_KEYS, TrainConfig
from training.distributed import decided_by_rank0
from training.logger import PROJECTOR_CONFIG, PROJECTOR_DIR, tensorboard_files

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
    """Refuse a run directory where a run's file or folder is a link (nothing is written or
    deleted through one), or where a config.yaml that train.py did not write sits without a run."""
    for name in (*RUN_FILES, PROJECTOR_DIR, PROJECTOR_CONFIG, SET_ASIDE):
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
    """The run's config, the checkpoint it continues (None for a fresh run) and notes for the
    user; refuses, before anything is written, every run that would change a run it does not own."""
    if args.resume is None:
        if holds_run(Path(args.config.out_dir)) and not args.overwrite:
            raise RunDirError(
                f"{args.config.out_dir} already holds a run; continue it with --resume, start "
                "afresh with --overwrite (which deletes its checkpoints and TensorBoard logs), or "
                "train beside it with --out_dir auto (a new directory named for the run)"
            )
        return args.config, None, []
    try:
        # last.pt, or best.pt where a run stopped between writing the two (see reconcile_best)
        path = resolve_checkpoint_path(args.resume, names=(LAST, BEST))
    except CheckpointError as e:
        raise CheckpointError(f"nothing to resume: {e}") from None
    checkpoint = load_checkpoint(path, map_location="cpu")
    config, notes = config_for_resume(checkpoint["config"], args.settings, path.parent)
    out_dir = Path(config.out_dir)
    continues_in_place = out_dir.resolve() == path.parent.resolve()
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
    """best.pt is written before last.pt (Trainer.save), so a run that failed between the two
    leaves a best.pt newer than last.pt, holding a better loss than last.pt knows of. The resumed
    run takes that loss as the one to beat, so it never replaces best.pt by a worse model."""
    best = load_checkpoint(best_path)
    if best["best_val_loss"] >= checkpoint["best_val_loss"]:
        return []
    checkpoint["best_val_loss"] = best["best_val_loss"]
    return [
        f"note: {best_path} (iteration {best['iter_num']}, val {best['best_val_loss']:.4f}) is "
        f"newer than {best_path.parent / LAST} (iteration {checkpoint['iter_num']}): the run "
        "stopped between the two writes; it continues from last.pt and keeps best.pt"
    ]


class RunDirectory:
    """out_dir as one run holds it, from `with` to its end; rank 0 decides for every rank. Where
    out_dir exists it is locked at once, so a second run aimed at a live one is refused before
    any slow work; `claim` (once the config and data are checked) creates, locks and checks it,
    settles what a killed process left (temporary files; a run set aside) and, for a fresh run
    with --overwrite, sets the old run aside, given back if the new one makes no checkpoint."""

    def __init__(self, out_dir: Path, runtime: Runtime) -> None:
        self.out_dir, self.runtime = out_dir, runtime
        self.lock: RunLock | None = None
        self.aside: SetAside | None = None

    def __enter__(self) -> RunDirectory:
        def lock_existing() -> RunLock | None:
            if not os.path.isdir(self.out_dir):
                return None
            lock = RunLock(self.out_dir)
            lock.acquire()
            return lock

        self.lock = decided_by_rank0(self.runtime, self.out_dir, lock_existing)
        return self

    def claim(self, fresh: bool, overwrite: bool, say) -> None:
        out_dir = self.out_dir

        def claim() -> SetAside:
            if self.lock is None:
                make_run_dir(out_dir)
                self.lock = RunLock(out_dir)
                self.lock.acquire()
            check_run_dir_entries(out_dir)
            aside = SetAside(out_dir, SET_ASIDE)  # first, settle what a killed process left there
            if aside.folder.exists() and holds_run(out_dir):
                aside.discard()
            elif aside.folder.exists():
                restored = restore_set_aside(aside, out_dir)
                say(
                    f"note: restored the run an --overwrite set aside in {out_dir} "
                    f"({len(restored)} files): the run meant to replace it made no checkpoint"
                )
            if fresh and holds_run(out_dir):
                if not overwrite:  # another run took the directory since the first check
                    raise RunDirError(f"{out_dir} already holds a run; give another --out_dir")
                aside.move(_previous_run_files(out_dir))
            remove_stale_temporaries(out_dir)
            return aside

        self.aside = decided_by_rank0(self.runtime, out_dir, claim)

    def discard_replaced(self) -> None:
        """The new run has a checkpoint: the run it replaced is deleted."""
        if self.aside is not None:
            self.aside.discard()

    def __exit__(self, *exc: object) -> None:
        try:
            aside = self.aside
            if aside is not None and aside.folder.exists() and not holds_run(self.out_dir):
                restore_set_aside(aside, self.out_dir)  # the new run failed before a checkpoint
        finally:
            if self.lock is not None:
                self.lock.release()


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
    resume takes them from the caller only), under torchrun when the run had several processes
    (the checkpoint holds every rank's random streams), and in one process its Python form."""
    paths = [key for key in DATA_PATH_KEYS if getattr(config, key)]
    flags = "".join(f" --{key} {shlex.quote(getattr(config, key))}" for key in paths)
    if launched_by_torchrun():
        launcher = f"torchrun --standalone --nproc_per_node={world_size}"
        return f"{launcher} train.py --resume {shlex.quote(config.out_dir)}{flags}"
    keywords = "".join(f", {key}={getattr(config, key)!r}" for key in paths)
    return (
        f"python train.py --resume {shlex.quote(config.out_dir)}{flags} (in Python: "
        f"train(resume={config.out_dir!r}{keywords}))"
    )
