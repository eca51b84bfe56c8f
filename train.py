"""Train a character-level GPT: `python train.py --config small.yaml` (see --help).

The whole run, top to bottom: set-up (the config, the run directory, the data, the model and
optimizers), the loop (a step; every eval_interval an evaluation and a checkpoint), the end (the
exact validation loss). The pieces it calls: training/trainer.py (the state and the step),
training/rundir.py (which directory a run may write into), training/stopping.py (signals).

Exit codes: 0 done; 1 a problem with the data, device, checkpoint or run directory; 2 a mistake
in the configuration; 128 + the signal's number when a signal stopped it (130 for SIGINT, 143 for
SIGTERM, 129 for SIGHUP), after saving last.pt.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path

import torch
import yaml

from checkpoint import LAST
from data import load_dataset
from infra.device import launched_by_torchrun
from infra.errors import DeviceError, run_main
from infra.files import write_atomic
from infra.progress import progress
from model.scoring import exact_loss
from training.command_line import load_config
from training.console import Console
from training.distributed import StepReport, agree_at_log_point, runtime_for
from training.evaluation import sample_text
from training.logger import Logger, NullLogger, TensorBoardLogger
from training.mfu import flops_per_token, peak_flops
from training.optim import describe_optimizers
from training.rundir import (
    CONFIG_FILE,
    CONFIG_HEADER,
    QuitNow,
    RunDirectory,
    prepare_run,
    resume_command,
)
from training.stopping import SignalCatcher, TrainingInterrupted, check_finite
from training.trainer import Trainer
from viz.inspection import log_inside_the_model, look_inside_the_model


def train(argv: list[str] | None = None) -> None:
    # ---- set-up. Everything that can refuse the run (the config, the checkpoint to resume, the
    # device, the data, the model's size) is checked before out_dir is created or changed.
    args = load_config(argv)
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
        trainer = Trainer(config, runtime, data, console=console, checkpoint=checkpoint)
        # out_dir is this run's from here: locked, and an --overwrite's old run set aside until
        # the new run's first checkpoint
        run_dir.claim(fresh=checkpoint is None, overwrite=args.overwrite, say=console.print)
        trainer.after_first_checkpoint = run_dir.discard_replaced
        trainer.logger = start_logs(trainer, checkpoint, args.config_name)
        try:
            describe(trainer)
            loop(trainer)
            # ---- the end
            if runtime.is_main:
                report_exact_val_loss(trainer)
            peak = ""
            if runtime.device.type == "cuda":
                peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            console.print(
                f"done: {trainer.iter_num} iterations, best val loss {trainer.best_val_loss:.4f}"
                f"{peak}; checkpoints in {config.out_dir}"
            )
        except TrainingInterrupted as e:
            resume = resume_command(config, runtime.world_size)
            raise TrainingInterrupted(e.signum, e.checkpoint, resume) from None
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
            trainer.logger.close()


def loop(trainer: Trainer) -> None:
    """Train until max_iters: evaluate and checkpoint every eval_interval iterations, estimate
    the losses alone every loss_interval, log every log_interval. A signal (SIGINT, SIGTERM,
    SIGHUP) takes effect at the next log point, where the ranks meet: every rank saves last.pt
    and raises TrainingInterrupted."""
    config, console = trainer.config, trainer.console
    with SignalCatcher(console.print) as signals:
        console.start_bar(total=config.max_iters, initial=trainer.iter_num)
        trainer.start_clock()
        try:
            while True:
                # evaluation first: the one at iteration N sees the model after N steps
                if trainer.iter_num != trainer.resumed_at:  # a resume's was made before it
                    if trainer.due(config.eval_interval):
                        evaluate(trainer)
                    elif config.loss_interval and trainer.due(config.loss_interval):
                        trainer.estimate_losses()  # a point of the curves, nothing more
                if trainer.iter_num >= config.max_iters:
                    break
                loss, grad_norm = trainer.train_step(trainer.train_batches)
                console.update_bar(1)
                if trainer.due(config.log_interval):
                    report = agree_at_log_point(loss, grad_norm, signals.signum, trainer.runtime)
                    check_finite(report, trainer.iter_num, not trainer.scaler.is_enabled())
                    log(trainer, report)
                    if report.stop_requested and trainer.iter_num < config.max_iters:
                        if trainer.due(config.eval_interval):
                            evaluate(trainer)  # saves last.pt too
                        else:
                            trainer.save()
                        signum = signals.signum or signal.SIGTERM
                        raise TrainingInterrupted(signum, Path(config.out_dir) / LAST)
        finally:
            console.close_bar()
            trainer.background.wait()  # the last checkpoint is on disk before the run goes on
            trainer.logger.flush()


def evaluate(trainer: Trainer) -> None:
    """Estimate the losses and log them; then, past iteration 0, a sample, the views inside the
    model, and the checkpoint. Iteration 0 is the curve's first point (an untrained model's loss,
    near ln(vocab_size)) and no more: its sample is noise, its attention uniform, and a checkpoint
    of the random initial weights holds nothing the seed does not."""
    rt, cfg, logger = trainer.runtime, trainer.config, trainer.logger
    losses = trainer.estimate_losses()
    step = trainer.iter_num
    trainer.best_val_loss = min(trainer.best_val_loss, losses["val"]) if step else math.inf
    if step == 0:
        logger.flush()
        return
    if cfg.sample_chars and rt.is_main:
        text = sample_text(trainer.model, trainer.data.tokenizer, cfg.sample_chars, cfg.seed, rt)
        logger.text("sample", text, step)
    # the previous evaluation's writes end before this one's start: at most one in memory
    trainer.background.wait()
    if cfg.inspect and logger.active:
        inside = look_inside_the_model(trainer.model, trainer.probe, step)
        pictures, tokenizer = trainer.pictures, trainer.data.tokenizer
        trainer.background.submit(lambda: log_inside_the_model(logger, inside, pictures, tokenizer))
    trainer.save(best=trainer.best_val_loss == losses["val"])  # written in the background
    logger.flush()
    trainer.restart_clock()


def log(trainer: Trainer, report: StepReport) -> None:
    """The log point's scalars to TensorBoard; a line, or the bar's postfix, to the console."""
    rt, logger, step = trainer.runtime, trainer.logger, trainer.iter_num
    tokens_per_sec, lr = trainer.tokens_per_sec(), trainer.optimizers[0].param_groups[0]["lr"]
    logger.scalar("loss/train_batch", report.loss, step)
    logger.scalar("lr", lr, step)
    logger.scalar("grad_norm", report.grad_norm, step)
    logger.scalar("tokens_per_sec", tokens_per_sec, step)
    peak, mfu_text = peak_flops(rt.device, rt.dtype), ""
    if peak:
        mfu = flops_per_token(trainer.model, trainer.config.block_size) * tokens_per_sec / peak
        logger.scalar("mfu", mfu, step)
        mfu_text = f", mfu {100 * mfu:.1f}%"
    progress = f"loss {report.loss:.4f}, lr {lr:.2e}, {tokens_per_sec:,.0f} tok/s{mfu_text}"
    if trainer.console.bar is not None:  # the bar shows the time left
        trainer.console.update_bar(0, postfix=progress)
    else:
        trainer.console.print(f"iter {step}: {progress}, {trainer.time_left()} left")
    trainer.restart_clock()


def start_logs(trainer: Trainer, checkpoint: dict | None, config_name: str) -> Logger:
    """Rank 0 prints the resolved config and writes it to out_dir/config.yaml, and opens the
    TensorBoard log (on resume, TensorBoard drops what the stopped run logged after its
    checkpoint)."""
    config, console = trainer.config, trainer.console
    if not trainer.runtime.is_main:
        return NullLogger()
    resolved = yaml.safe_dump(config.to_dict(), sort_keys=False)
    console.print(f"resuming {config.out_dir}:" if checkpoint else f"config ({config_name}):")
    console.print("  " + resolved.rstrip().replace("\n", "\n  "))
    text = f"{CONFIG_HEADER}\n{resolved}"
    write_atomic(Path(config.out_dir) / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    if not config.tensorboard:
        return NullLogger()
    purge_step = checkpoint["iter_num"] + 1 if checkpoint else 0
    logger = TensorBoardLogger(Path(config.out_dir), purge_step=purge_step)
    if checkpoint is None:
        logger.hparams(config.to_dict(), ["loss/val", "loss/val_exact", "loss/train"])
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


def report_exact_val_loss(trainer: Trainer) -> None:
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
    trainer.logger.scalar("loss/val_exact", nats, trainer.iter_num)


def rank_prefix() -> str:
    """'[rank N] ' under torchrun, so each process's one-line error says whose it is."""
    return f"[rank {os.environ['RANK']}] " if launched_by_torchrun() else ""


def main(argv: list[str] | None = None) -> int:
    return run_main(train, argv, prog="train.py", prefix=rank_prefix)


if __name__ == "__main__":
    sys.exit(main())
