"""What an evaluation costs the training loop beyond its loss estimate, phase by phase.

    python benchmarks/evaluation_cost.py --config shakespeare_char --device cuda
    python benchmarks/evaluation_cost.py --config shakespeare_char --device cpu --eval_iters 1

Builds the config's Trainer, writing TensorBoard files and checkpoints into a temporary
directory, and times 5 training steps (after 2 to warm up) and 3 loss estimates, nothing else
running. Then it runs --evaluations evaluations, one after every training step (the worst case:
the background work of one evaluation has a single step to hide behind). Each phase the trainer
calls is timed where it runs, the device synchronised around it:

- in the training thread: the loss estimate (the evaluation's purpose, not counted as extra),
  the sample, looking inside the model (attention maps, histograms counted on the device, the
  embedding, copied off it), the checkpoint's copy to the CPU, and any wait for the previous
  evaluation's background work;
- in the background thread: drawing and writing TensorBoard's views, and writing the checkpoint.

Then the extra share of the config's own run (its max_iters and eval_interval, at the training
step's time measured here): the training thread's extra per evaluation, plus whatever part of the
background work would not fit in the steps between two evaluations, over the run's wall time.
Extras are drawn at every evaluation here, whatever extras_budget says. Last, what the loss
points between evaluations (loss_interval) cost: each is a loss estimate alone. Takes every
train.py key as an option; writes a record under records/.
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace

from common import machine_line, parse_with_run_options
from recording import write_record

import training.evaluation
import training.trainer
from data import load_dataset
from infra.background import Background
from infra.cli import option
from infra.device import setup_runtime, teardown_runtime
from infra.errors import run_main
from training.evaluation import evaluate, probe_pictures
from training.logger import TensorBoardLogger
from training.trainer import Trainer

# (where the evaluation looks the phase up, its name there, the name printed)
TRAINING_THREAD = [
    (training.evaluation, "estimate_loss", "loss estimate"),
    (training.evaluation, "generate", "sample"),
    (training.evaluation, "look_inside_the_model", "look inside (device)"),
    (Trainer, "save", "checkpoint copy to CPU"),
    (Background, "wait", "wait for background"),
]
BACKGROUND_THREAD = [
    (training.evaluation, "log_inside_the_model", "draw and write views"),
    (training.trainer, "save_checkpoint", "write checkpoint"),
]


@dataclass(frozen=True)
class CostOptions:
    evaluations: int = option(6, "evaluations timed (after one untimed)")


def timing(owner: object, name: str, label: str, seconds: dict, sync) -> None:
    """Replace owner.name with the same function, timed into seconds[label]."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        sync()
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sync()
            seconds[label].append(time.perf_counter() - start)

    setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> None:
    args, run = parse_with_run_options(CostOptions, argv, __doc__.split("\n")[0])
    with tempfile.TemporaryDirectory() as out_dir:
        # every evaluation draws its extras, as if extras_budget were 1: their cost is what is
        # measured here (a run's budget skips them once they took more than its share)
        config = replace(run.config, out_dir=out_dir, extras_budget=1.0)
        name = run.config_name
        runtime = setup_runtime(config.device, config.dtype)
        data = load_dataset(config.dataset, config.data_path, config.data_dir)
        trainer = Trainer(config, runtime, data)
        logger, pictures = TensorBoardLogger(out_dir), probe_pictures(config, data)
        seconds: dict[str, list[float]] = defaultdict(list)
        for owner, attribute, label in TRAINING_THREAD + BACKGROUND_THREAD:
            timing(owner, attribute, label, seconds, runtime.synchronize)
        steps = []  # the step's own time, with no background work beside it
        for _ in range(7):
            runtime.synchronize()
            start = time.perf_counter()
            trainer.train_step()
            runtime.synchronize()
            steps.append(time.perf_counter() - start)
        alone = []  # a loss point's time: the loss estimate, no background work beside it
        for _ in range(3):
            start = time.perf_counter()
            training.evaluation.estimate_loss(trainer.model, data, config, runtime)
            runtime.synchronize()
            alone.append(time.perf_counter() - start)
        for i in range(args.evaluations + 1):
            trainer.train_step()
            if i == 0:  # untimed: the first evaluation lays out the pictures, warms up kernels
                evaluate(trainer, logger, pictures)
                trainer.background.wait()
                seconds.clear()
                continue
            evaluate(trainer, logger, pictures)
        trainer.background.wait()
        logger.close()
        teardown_runtime()

    def per_evaluation(label: str) -> float:  # seconds, median over the timed evaluations
        values = seconds.get(label, [])
        return statistics.median(values) * len(values) / args.evaluations if values else 0.0

    step = statistics.median(steps[2:])  # the first two warm up
    print(machine_line(runtime.device))
    print(
        f"config {name}: {config.n_layer} layers, {config.n_embd} channels, batch "
        f"{config.batch_size} x {config.block_size}, eval_iters {config.eval_iters}, sample_chars "
        f"{config.sample_chars}, inspect {config.inspect}; a training step {1000 * step:.1f} ms"
    )
    phases = {}
    for thread, table in (("training", TRAINING_THREAD), ("background", BACKGROUND_THREAD)):
        print(f"{thread} thread, per evaluation (median of {args.evaluations}):")
        for _, _, label in table:
            phases[label] = per_evaluation(label)
            print(f"  {label:<26} {1000 * phases[label]:9.1f} ms")
    loss = phases["loss estimate"]
    # what the training thread spends besides the loss estimate, waits aside: in a real run the
    # background work has eval_interval steps to hide behind
    extra = sum(phases[label] for _, _, label in TRAINING_THREAD[1:-1])
    background = sum(phases[label] for _, _, label in BACKGROUND_THREAD)
    interval = config.eval_interval * step
    stall = max(0.0, background - interval)
    evaluations = config.max_iters // config.eval_interval + 1
    wall = config.max_iters * step + evaluations * (loss + extra + stall)
    share = evaluations * (extra + stall) / wall
    print(
        f"{name}'s run here: {config.max_iters} steps x {1000 * step:.1f} ms, {evaluations} "
        f"evaluations; beyond their loss estimates they cost {1000 * (extra + stall):.0f} ms each "
        f"({1000 * stall:.0f} ms of it waiting for background work longer than "
        f"{config.eval_interval} steps): {100 * share:.1f}% of the run's wall time"
    )
    # a loss point between evaluations (loss_interval) is the loss estimate alone
    points = config.max_iters // config.loss_interval if config.loss_interval else 0
    points -= min(points, config.max_iters // config.eval_interval)  # those at evaluations
    point = statistics.median(alone)
    if points:
        share = points * point / (wall + points * point)
        print(
            f"{points} loss points between the evaluations (loss_interval "
            f"{config.loss_interval}), each a loss estimate alone, {1000 * point:.0f} ms = "
            f"{point / step:.1f} training steps: {100 * share:.1f}% of the run's wall time"
        )
    figures = {
        "config": name,
        "loss_points": points,
        "loss_point_ms": 1000 * point,
        "step_ms": 1000 * step,
        "phases_ms": {label: 1000 * value for label, value in phases.items()},
        "extra_ms_per_evaluation": 1000 * (extra + stall),
        "extra_share": share,
        "overrides": {k: v for k, v in run.settings.items() if k != "out_dir"},
    }
    write_record("evaluation_cost", name, figures, device=str(runtime.device))


if __name__ == "__main__":
    sys.exit(run_main(main, prog="evaluation_cost.py"))
