"""Train a character-level GPT: `python train.py --config small.yaml` (see --help), or from Python
`train("small.yaml", max_iters=300, hooks=[print])`, and a grid of variants with `sweep(...)`.

The whole run, top to bottom: set-up (the config, the run directory, the data, the model and
optimizers), the loop (a step; a log line every log_interval; an evaluation and a checkpoint every
eval_interval; the hooks), the end (the exact validation loss). The same code trains a sweep's
variants, alone or several as one stack (training/stack.py). The pieces it calls live in
training/: the trainer (state, step, clock), evaluation, run directories, signals, sweeps.

Exit codes: 0 done; 1 a problem with the data, device, checkpoint or run directory; 2 a mistake
in the configuration; 128 + the signal's number when a signal stopped it (130 for SIGINT, 143 for
SIGTERM, 129 for SIGHUP), after saving last.pt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from checkpoint import LAST
from data import load_dataset
from infra.device import launched_by_torchrun, resolve_device
from infra.errors import ConfigError, DeviceError, run_main
from infra.files import write_atomic
from infra.progress import progress
from model.gpt import attention_kernel
from model.scoring import exact_loss
from training.command_line import TrainArgs, load_config, parse_command_line
from training.config import TrainConfig
from training.console import Console
from training.distributed import StepReport, agree_at_log_point, runtime_for
from training.evaluation import evaluate, probe_pictures
from training.logger import Logger, TensorBoardLogger
from training.mfu import flops_per_token, peak_flops
from training.optim import describe_optimizers
from training.run import Hook, Run, Step, StopTraining, Sweep
from training.rundir import (
    CONFIG_FILE,
    CONFIG_HEADER,
    QuitNow,
    RunDirectory,
    prepare_run,
    resume_command,
)
from training.stack import Stack
from training.stopping import NonFiniteLoss, SignalCatcher, check_finite
from training.sweep import plan_sweep, result_row, stack_groups, write_plan, write_results
from training.trainer import Trainer
from viz.figures import AttentionPictures

__all__ = ["Run", "Step", "StopTraining", "Sweep", "sweep", "train"]


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
    args = load_config(config, resume, overwrite, **settings)
    if args.sweep:
        raise ConfigError(f"this varies {', '.join(args.sweep)}: sweep() trains a grid of runs")
    (run,) = train_together([args], hooks, stacked=False)
    return run


def sweep(
    config: str | Path | None = None,
    *,
    hooks: Sequence[Hook] = (),
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> Sweep:
    """Train a variant for every combination of the values given as lists among the settings
    (and in the config file's `sweep:`), e.g. sweep("small.yaml", learning_rate=[1e-3, 3e-3],
    seed=[1, 2]): each an ordinary run in out_dir/<its values>/, and a table of their results
    (results.md and results.csv in out_dir, sorted by best val loss). `stack` (a setting; auto:
    on CUDA) trains variants that can share one as a stack, the others one after another. A
    variant whose loss becomes non-finite stops alone; Ctrl-C saves every variant that has
    begun; resume=out_dir continues each from its own last.pt. Hooks see every variant's steps."""
    args = load_config(config, resume, overwrite, **settings)
    if not args.sweep:
        raise ConfigError("nothing to sweep: give a key a list of values, e.g. seed=[1, 2]")
    rank, world = 0, 1  # under torchrun the processes share out the variants, each alone
    if launched_by_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    sweep_dir, variants = plan_sweep(args, first=rank == 0)
    # every variant checked before any directory is touched
    prepared = [(v.args, *prepare_run(v.args)) for v in variants]
    if args.resume is None and rank == 0:
        write_plan(sweep_dir, variants, args.sweep)
    configs = [config for _, config, _, _ in prepared]
    stack = configs[0].stack
    if stack is None:  # auto: a stack pays where one step of many models costs little more
        stack = resolve_device(configs[0].device).type == "cuda"
    mine = {
        i: (config, checkpoint["iter_num"] if checkpoint else 0)
        for i, (_, config, checkpoint, _) in enumerate(prepared)
        if i % world == rank
    }
    groups = stack_groups(mine) if stack else [[i] for i in mine]
    if not stack:
        print(f"sweep: {len(mine)} variants into {sweep_dir}, one after another")
    if stack and len(groups) > 1:
        print(f"sweep: {len(mine)} variants in {len(groups)} stacks, one after another "
              "(variants of a stack share everything but the optimizer's numbers and the seed, "
              "and stand at the same iteration)")  # fmt: skip
    done: Sweep = Sweep(sweep_dir, [], [], "")
    for group in groups:
        started = time.perf_counter()
        together = [prepared[i] for i in group]
        runs = train_together(together, hooks, stack, stop_alone=True, join=False)
        seconds = time.perf_counter() - started
        rows = [result_row(variants[i], run, seconds) for i, run in zip(group, runs, strict=True)]
        done.runs += runs
        done.rows += rows
        done.table = write_results(sweep_dir, rows)
        print(done.table, end="")
        if any(run.signal for run in runs):  # stopped by the user: the rest waits for --resume
            print(f"the sweep stopped; every variant continues with: python train.py --resume "
                  f"{sweep_dir}", file=sys.stderr)  # fmt: skip
            break
    return done


def train_together(
    requests: list[TrainArgs | tuple],
    hooks: Sequence[Hook],
    stacked: bool,
    stop_alone=False,
    join=True,
) -> list[Run]:
    """Train runs side by side: one alone, or a sweep's variants as one stack (one step trains
    them all, training/stack.py). Each request is a run's TrainArgs, or them with what
    prepare_run made of them. stop_alone: a run whose loss turns non-finite stops by itself.
    join: under torchrun, the processes train together (DDP); else each trains alone."""
    # ---- set-up. Everything that can refuse a run (its config, the checkpoint it resumes, the
    # device, the data, the model's size) is checked before its out_dir is created or changed.
    prepared = [r if isinstance(r, tuple) else (r, *prepare_run(r)) for r in requests]
    configs = [config for _, config, _, _ in prepared]
    first = configs[0]
    runtime_context = runtime_for(first.device, first.dtype, first.dist_timeout, join)
    with runtime_context as runtime, contextlib.ExitStack() as held:
        console = Console(enabled=runtime.is_main)
        run_dirs = [held.enter_context(RunDirectory(Path(c.out_dir), runtime)) for c in configs]
        if not runtime.is_main:  # rank 0 prepares the data while the others wait, then they read
            runtime.barrier()
        # runs trained together share their text (a stack's variants share all but PER_VARIANT)
        data = load_dataset(first.dataset, first.data_path, first.data_dir, say=console.print)
        if runtime.is_main:
            runtime.barrier()
        lanes = []
        for (args, config, checkpoint, notes), run_dir in zip(prepared, run_dirs, strict=True):
            say = console.labelled(f"[{run_dir.out_dir.name}] ") if len(prepared) > 1 else console
            for note in notes:
                say.print(note)
            trainer = Trainer(config, runtime, data, say, checkpoint, run_dir.discard_replaced)
            lanes.append(Lane(args, trainer, probe_pictures(config, data), stop_alone))
        # each out_dir is its run's from here: locked, and an --overwrite's old run set aside
        # until the new run's first checkpoint
        for lane, run_dir in zip(lanes, run_dirs, strict=True):
            run_dir.claim(fresh=lane.resumed_from is None, overwrite=lane.args.overwrite,
                          say=lane.trainer.console.print)  # fmt: skip
            lane.start_logs(runtime.is_main)
            held.callback(lane.logger.close)
        trainers = [lane.trainer for lane in lanes]
        if stacked:
            step = Stack(trainers).step
        else:

            def step(active: list[Trainer]) -> list:
                return [trainer.train_step() for trainer in active]

        try:
            describe(trainers, stacked)
            loop(lanes, hooks, step)
            # ---- the end
            for lane in lanes:
                lane.finish()
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop (exact pass)
            raise QuitNow(Path(configs[0].out_dir)) from None
        except RuntimeError as e:  # torch.OutOfMemoryError on a GPU, a plain one on the CPU
            if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
                raise
            raise DeviceError(
                f"out of {runtime.device.type} memory at iteration {trainers[0].iter_num}: make "
                "batch_size, block_size or the model smaller"
            ) from None
    for lane in lanes:
        lane.run.model.eval()  # ready to sample from
    return [lane.run for lane in lanes]


def loop(lanes: list[Lane], hooks: Sequence[Hook], step: Callable[[list[Trainer]], list]) -> None:
    """Train until max_iters. `step` takes one optimizer step of the runs still training (a run
    alone: its train_step; a stack: all of them at once). After it, for each run: a log line
    every log_interval, an evaluation and a checkpoint every eval_interval (the losses alone
    every loss_interval), then the hooks. A signal (SIGINT, SIGTERM, SIGHUP) takes effect at the
    next log point, where the ranks meet, as does a hook's StopTraining under torchrun (at once
    in one process): each run saves last.pt and ends, its `stopped` saying why."""
    first = lanes[0].trainer
    config, console, rt = first.config, first.console.owner, first.runtime
    hook_stop = False
    with SignalCatcher(console.print) as signals:
        console.start_bar(total=config.max_iters, initial=first.iter_num)
        try:
            for lane in lanes:
                lane.trainer.clock.start(lane.trainer.iter_num)
                if lane.trainer.iter_num == 0:  # the curves' first point: the untrained losses
                    evaluate(lane.trainer, lane.logger, lane.pictures)
            while active := [lane for lane in lanes if lane.training]:
                results = step([lane.trainer for lane in active])
                console.update_bar(1)
                stop = False
                for lane, (loss, grad_norm) in zip(active, results, strict=True):
                    asked = signals.signum is not None or hook_stop
                    try:
                        stop_asked, evaluation = lane.after_step(loss, grad_norm, asked)
                    except NonFiniteLoss as e:
                        if not lane.stop_alone:
                            raise
                        lane.run.stopped = f"non-finite loss: {e}"
                        lane.trainer.console.print(f"stopped alone: {e}; its checkpoints stay")
                        continue
                    stop |= stop_asked
                    if hooks:
                        t = lane.trainer
                        lr = t.optimizers[0].param_groups[0]["lr"]  # AdamW's
                        taken = Step(t.iter_num, lr, t.model, evaluation, lane.run, loss, t)
                        hook_stop = call_hooks(hooks, taken) or hook_stop
                        stop |= hook_stop and not rt.distributed
                if stop and first.iter_num < config.max_iters:
                    for lane in active:
                        lane.stop(signals.signum or (None if hook_stop else signal.SIGTERM))
                    return
        finally:
            console.close_bar()
            for lane in lanes:
                lane.trainer.background.wait()  # the last checkpoints are on disk
                lane.logger.flush()


def call_hooks(hooks: Sequence[Hook], step: Step) -> bool:
    """Each hook in order; True when one raised StopTraining. Any other exception is the hook's
    own (the caller's code): the run saves last.pt and the exception goes on up, as it was."""
    try:
        for hook in hooks:
            hook(step)
    except StopTraining:
        return True
    except Exception:
        trainer = step.trainer
        if not trainer.runtime.distributed:  # saving meets the other ranks, who are not coming
            trainer.save()
            trainer.background.wait()
        raise
    return False


class Lane:
    """One run while it trains beside others (or alone): what it was asked (args), its trainer,
    its probe's pictures, its logger (which keeps its history) and the Run it returns."""

    def __init__(
        self, args: TrainArgs, trainer: Trainer, pictures: AttentionPictures, stop_alone: bool
    ) -> None:
        self.args, self.trainer, self.pictures = args, trainer, pictures
        self.stop_alone = stop_alone
        self.resumed_from = trainer.iter_num if args.resume else None
        self.logger = Logger()
        self.run = Run(trainer.config, trainer.model, trainer.data.tokenizer, self.logger.history)

    @property
    def training(self) -> bool:
        return self.run.stopped is None and self.trainer.iter_num < self.trainer.config.max_iters

    def start_logs(self, is_main: bool) -> None:
        """Rank 0 prints the settings that differ from the defaults, writes them all to
        out_dir/config.yaml, and opens the TensorBoard log (on resume, TensorBoard drops what the
        stopped run logged after its checkpoint). Every rank keeps its history."""
        config, say, resumed = self.trainer.config, self.trainer.console.print, self.resumed_from
        self.run.iter_num = self.trainer.iter_num
        self.run.best_val_loss = self.trainer.best_val_loss
        if not is_main:
            return
        settings = config.to_dict()
        resolved = yaml.safe_dump(settings, sort_keys=False)
        # on the console only what differs from TrainConfig's defaults; the file has them all
        defaults = TrainConfig().to_dict()
        changed = {key: value for key, value in settings.items() if value != defaults[key]}
        where = f"all {len(settings)} in {Path(config.out_dir) / CONFIG_FILE}"
        run = f"resuming {config.out_dir}" if resumed is not None else (
            f"config ({self.args.config_name})"
        )  # fmt: skip
        say(f"{run}: {len(changed)} settings differ from the defaults ({where}):")
        if changed:
            say("  " + yaml.safe_dump(changed, sort_keys=False).rstrip().replace("\n", "\n  "))
        text = f"{CONFIG_HEADER}\n{resolved}"
        write_atomic(Path(config.out_dir) / CONFIG_FILE, lambda tmp: tmp.write_text(text))
        if config.tensorboard:
            purge_step = resumed + 1 if resumed is not None else 0
            logger = TensorBoardLogger(Path(config.out_dir), purge_step=purge_step)
            logger.history = self.logger.history
            if resumed is None:
                shown = self.args.hparams or tuple(config.to_dict())
                hparams = {key: getattr(config, key) for key in shown}
                logger.hparams(hparams, ["val_loss", "val_loss_exact", "train_loss"])
            self.logger = logger

    def after_step(self, loss, grad_norm, asked: bool) -> tuple[bool, dict[str, float] | None]:
        """What follows a step: the log point, the evaluation, the run's numbers brought up to
        date. Returns whether a stop was asked for at this log point, and the evaluation's
        losses on a step that had one."""
        trainer, config, stop, evaluation = self.trainer, self.trainer.config, False, None
        if trainer.due(config.log_interval):
            report = agree_at_log_point(loss, grad_norm, asked, trainer.runtime)
            check_finite(report, trainer.iter_num, not trainer.scaler.is_enabled())
            log(trainer, self.logger, report)
            stop = report.stop_requested
        if trainer.due(config.eval_interval):
            evaluation = evaluate(trainer, self.logger, self.pictures)
        elif config.loss_interval and trainer.due(config.loss_interval):
            evaluation = evaluate(trainer, self.logger, self.pictures, extras=False)
        self.run.iter_num, self.run.best_val_loss = trainer.iter_num, trainer.best_val_loss
        return stop, evaluation

    def stop(self, signum: int | None) -> None:
        """Stop here, by a signal (its number) or a hook's StopTraining (None): last.pt saved."""
        if not self.trainer.due(self.trainer.config.eval_interval):  # else evaluated and saved
            self.trainer.save()
        self.run.signal = signum
        self.run.stopped = signal.Signals(signum).name if signum else "StopTraining"

    def finish(self) -> None:
        """The end. A run that went to max_iters: its loss over every character of the validation
        split, or its first exact_max_chars (model/scoring.py), beside the last random-window
        estimate, and a last line. A run stopped by a signal or StopTraining: one line on stderr
        from every process, with the command that continues it."""
        trainer, run, config = self.trainer, self.run, self.trainer.config
        if run.stopped is not None:
            if not run.stopped.startswith("non-finite"):
                say_how_to_continue(run, trainer.runtime.world_size)
            return
        if trainer.runtime.is_main:
            val, cap, total = trainer.data.val, config.exact_max_chars, trainer.data.val.numel() - 1
            tokens = val[: cap + 1] if cap and total > cap else val

            def scoring(batches):
                return progress(batches, len(batches), "exact val loss", unit="batch")

            with trainer.runtime.autocast():
                nats, count = exact_loss(trainer.model, tokens, progress=scoring)
            estimate = trainer.eval_losses.get("val")
            beside = f" (random-window estimate {estimate:.4f})" if estimate is not None else ""
            scope = f"all {count:,}" if count == total else f"the first {count:,} of {total:,}"
            # every character of the split but its first is predicted from those before it
            trainer.console.print(
                f"exact val loss {nats:.4f} over {scope} predicted characters{beside}"
            )
            self.logger.scalar("val_loss_exact", nats, trainer.iter_num)
            run.val_loss_exact = nats
        peak = ""
        if trainer.runtime.device.type == "cuda":
            peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        trainer.console.print(
            f"done: {trainer.iter_num} iterations, best val loss {trainer.best_val_loss:.4f}"
            f"{peak}; checkpoints in {config.out_dir}"
        )
        trainer.console.print(f"sample from it: python sample.py --ckpt {config.out_dir}")
        if config.tensorboard:
            runs = Path(config.out_dir).parent  # the run shows under its directory's name
            trainer.console.print(f"its curves: tensorboard --logdir {runs}")


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
    # the latest training batch's loss; an evaluation's "train loss" is over eval_iters batches
    progress = (
        f"batch loss {report.loss:.4f}, lr {rates[0]:.2e}, {tokens_per_sec:,.0f} tok/s{mfu_text}"
    )
    if trainer.console.owner.bar is not None:  # the bar shows the time left
        trainer.console.owner.update_bar(0, postfix=progress)
    else:
        left = trainer.clock.time_left(step, config.max_iters)
        trainer.console.print(f"iter {step}: {progress}, {left} left")


def describe(trainers: list[Trainer], stacked: bool) -> None:
    """The start-up lines: where and in what precision it runs (and why), the model's size, and
    the tokens one optimizer step sees."""
    trainer = trainers[0]
    cfg, rt, say = trainer.config, trainer.runtime, trainer.console.owner.print

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"

    reason = f" ({rt.dtype_reason})" if rt.dtype_reason else ""
    dtype = str(rt.dtype).removeprefix("torch.")
    precision = "float32, no autocast" if rt.dtype == torch.float32 else f"autocast {dtype}"
    say(
        f"device {rt.device}, {precision}{reason}, "
        f"{count(rt.world_size, 'process')}, "
        f"{'compiled' if trainer.compiled else 'eager'} ({trainer.compile_reason})"
    )
    kernel, why = attention_kernel(cfg.attn_impl, rt.device, cfg.block_size, rt.dtype), "as set"
    if cfg.attn_impl == "auto":
        why = "auto: " + (
            f"the faster in {str(rt.dtype).removeprefix('torch.')} on the CPUs measured"
            if rt.device.type == "cpu" else "torch's fused kernels on a GPU"
        ) + ", docs/performance.md"  # fmt: skip
    say(f"model: {trainer.model.num_params() / 1e6:.2f}M parameters; attention {kernel} ({why})")
    say(f"optimizer: {describe_optimizers(trainer.optimizers)}")
    say(
        f"tokens per iteration: {count(trainer.accum_steps, 'micro-step')} x "
        f"{count(rt.world_size, 'process')} x {cfg.batch_size} batch x {cfg.block_size} "
        f"block = {trainer.tokens_per_iter:,}"
    )
    if len(trainers) > 1:
        how = "as one stack, one step for all" if stacked else "one after another"
        say(f"{len(trainers)} variants, {how}")


def say_how_to_continue(run: Run, world_size: int) -> None:
    """One line on stderr, from every process: why the run stopped, what it saved, and the
    command that continues it."""
    with contextlib.suppress(OSError):  # nobody reads stderr any more: the run is saved
        print(f"{rank_prefix()}stopped by {run.stopped} at iteration {run.iter_num}; saved "
              f"{run.out_dir / LAST}. Continue with: {resume_command(run.config, world_size)}",
              file=sys.stderr, flush=True)  # fmt: skip


def rank_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""


def main(argv: list[str] | None = None) -> int:
    """The command line: its options parsed into train()'s arguments."""

    def from_command_line(argv: list[str] | None) -> int:
        arguments = parse_command_line(argv)
        if load_config(**arguments).sweep:
            runs = sweep(**arguments).runs
        else:
            runs = [train(**arguments)]
        return next((128 + run.signal for run in runs if run.signal), 0)

    return run_main(from_command_line, argv, prog="train.py", prefix=rank_prefix)


if __name__ == "__main__":
    sys.exit(main())
