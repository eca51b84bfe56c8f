"""How many of the project's files a reader follows through one piece of work, traced as it runs.

    python benchmarks/reading_path.py --data_path data/shakespeare_char/input.txt

For each piece (one training step; one iteration of the training loop with an evaluation and a
checkpoint; one sampled character; train.py from its command line to the first optimizer step)
it follows every Python call and return on configs/tiny.yaml on the CPU and keeps, in order, the
project file that is running (torch's own frames count as the project file that called them).
It prints the files entered, the stays (runs of consecutive events in one file: each is a jump a
reader makes) and the returns (stays in a file already left once). Tests, benchmarks and the
virtual environment are not the project's files here.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from data import load_dataset
from infra.cli import option, parse_into
from infra.device import setup_runtime
from infra.errors import run_main
from model import generate

ROOT = Path(__file__).resolve().parent.parent
NOT_READ = ("tests", "benchmarks", "docs", ".venv")


@dataclass(frozen=True)
class PathOptions:
    data_path: str = option("", "Tiny Shakespeare (default: the project's cache, else download)")


def project_file(frame, origin) -> str | None:
    """The project file of the innermost project frame at or above frame, below origin."""
    while frame is not None and frame is not origin:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(ROOT):
            relative = path.relative_to(ROOT)
            if relative.parts[0] not in NOT_READ:
                return str(relative)
        frame = frame.f_back
    return None


@contextlib.contextmanager
def traced(stop_at: str | None = None) -> Iterator[list[str]]:
    """The project files in the order the running code passes through them; with stop_at, only
    until a function of that name is first entered."""
    stays: list[str] = []
    stopped = False
    origin = sys._getframe(2)  # the frame of the `with`: what called the traced code

    def profile(frame, event, arg) -> None:
        nonlocal stopped
        if stopped or event not in ("call", "return"):
            return
        if event == "call" and frame.f_code.co_name == stop_at:
            stopped = True
            return
        where = project_file(frame if event == "call" else frame.f_back, origin)
        if where is not None and (not stays or stays[-1] != where):
            stays.append(where)

    sys.setprofile(profile)
    try:
        yield stays
    finally:
        sys.setprofile(None)


def report(name: str, stays: list[str]) -> None:
    files = sorted(set(stays))
    print(f"{name}: {len(files)} files, {len(stays)} stays, {len(stays) - len(files)} returns")
    print(f"  {', '.join(files)}")


def load_config(argv: list[str]):
    from training.command_line import load_config as load
    from training.command_line import parse_command_line

    return load(**parse_command_line(argv)).config


def run_loop(trainer) -> None:
    import train  # imported before any tracing: an import is not a step of the work
    from training.command_line import TrainArgs
    from training.evaluation import probe_pictures

    args = TrainArgs(trainer.config, "tiny", {}, None, False)
    lane = train.Lane(args, trainer, probe_pictures(trainer.config, trainer.data), False)
    train.loop([lane], [], lambda active: [t.train_step() for t in active])


def main(argv: list[str] | None = None) -> None:
    options = parse_into(PathOptions, argv, __doc__.split("\n")[0])
    import train  # before any tracing: its own imports are no step of the work
    from training.trainer import Trainer

    data_flags = ["--data_path", options.data_path] if options.data_path else []
    with tempfile.TemporaryDirectory() as out:
        base = ["--config", "tiny", "--device", "cpu", "--out_dir", f"{out}/run", *data_flags]
        config = replace(load_config(base), tensorboard=False, inspect=False, sample_chars=20)
        runtime = setup_runtime(config.device, config.dtype)
        data = load_dataset(config.dataset, config.data_path, config.data_dir)
        trainer = Trainer(config, runtime, data)
        trainer.train_step()  # the first step builds optimizer state
        with traced() as stays:
            trainer.train_step()
        report("one training step (Trainer.train_step)", stays)

        one = replace(
            config,
            max_iters=1,
            warmup_iters=0,
            eval_interval=1,
            log_interval=1,
            out_dir=f"{out}/loop",
        )
        trainer = Trainer(one, runtime, data)
        with traced() as stays:
            run_loop(trainer)
        report("one iteration of the loop, with an evaluation and a checkpoint", stays)

        prompt = torch.tensor([data.tokenizer.encode("ROMEO:")])
        generate(trainer.model.eval(), prompt, 1)  # once untraced: the packed copy is built
        with traced() as stays:
            generate(trainer.model, prompt, 1)
        report("one sampled character (model.generate, KV cache)", stays)

        walk = [*base, "--max_iters", "1", "--warmup_iters", "0", "--out_dir", f"{out}/walk"]
        with traced(stop_at="train_step") as stays:
            train.main(walk)
        report("train.py from its command line to the first optimizer step", stays)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="reading_path.py"))
