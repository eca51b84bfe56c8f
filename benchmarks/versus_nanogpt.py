"""Time to nanoGPT's CPU quality: nanoGPT's own code against this project's, alternated.

    git clone https://github.com/karpathy/nanoGPT ../nanoGPT     # checked against 3adf61e
    python benchmarks/versus_nanogpt.py --nanogpt ../nanoGPT --config cpu_fast --pairs 3
    python benchmarks/versus_nanogpt.py --nanogpt ../nanoGPT --config small --target 1.5 \
        -- --max_iters 550

With --recipe gpu, nanoGPT runs its own GPU recipe (`config/train_shakespeare_char.py`, compiled)
and this project's config on the GPU, with target 1.47 as a rule. Each pair runs nanoGPT's
`train.py` with the CPU recipe of its README ("I only have a macbook":
4 layers, 4 heads, 128 channels, block 64, batch 12, 2000 iterations, dropout 0), then this
project's `train.py --config CONFIG` with the next seed, one after the other, so that both see
the machine in the same state. For each it clocks the whole process from its launch (Python
start-up, imports, data loading and evaluations included) and the moment an evaluation first
reported val loss <= --target (nanoGPT's recipe ends near 1.886). Everything after `--` goes
to this project's train.py as it is. It prints each pair's ratios (to the target, and of the
whole processes) and their medians, and writes a record under records/.

nanoGPT runs in a temporary copy of the checkout, on the same corpus as the project
(--corpus, by default the project's cache data/shakespeare_char/input.txt), prepared by its own
`data/shakespeare_char/prepare.py`. Its MIT licence is in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import machine_line, parse_with_passthrough
from recording import write_record
from time_to_loss import HEADER, Run, print_run, run_once

from data.corpus import SHAKESPEARE_CACHE, check_shakespeare
from infra.cli import option
from infra.errors import ConfigError, run_main

NANOGPT_COMMIT = "3adf61e"  # the upstream commit this script was checked against
NANOGPT_CPU_RECIPE = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=100",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]
# nanoGPT's README: `python train.py config/train_shakespeare_char.py` on one GPU (compiled)
NANOGPT_GPU_RECIPE = ["config/train_shakespeare_char.py"]
RECIPES = {"cpu": NANOGPT_CPU_RECIPE, "gpu": NANOGPT_GPU_RECIPE}
NANOGPT_EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
# prepare.py imports requests for a download it does not need when input.txt is there
PREPARE_OFFLINE = (
    "import runpy, sys, types; sys.modules.setdefault('requests', types.ModuleType('requests'));"
    "runpy.run_path('prepare.py', run_name='__main__')"
)


@dataclass(frozen=True)
class VersusOptions:
    nanogpt: str = option(help="a checkout of karpathy/nanoGPT (its train.py, model.py, data/)")
    config: str = option("cpu_fast", "this project's config to race")
    recipe: str = option(
        "cpu", "nanoGPT's recipe: cpu (its README's) or gpu", choices=("cpu", "gpu")
    )
    target: float = option(1.886, "val loss to reach (nanoGPT's CPU recipe ends near it)")
    pairs: int = option(3, "nanoGPT runs, each followed by one of ours")
    first_seed: int = option(1337, "our seed in the first pair; the next pairs add 1")
    corpus: str = option(str(SHAKESPEARE_CACHE), "Tiny Shakespeare, for nanoGPT's preparation")


@dataclass
class NanoRun:
    seconds_to_target: float | None
    wall: float
    final_val: float
    best_val: float
    returncode: int


def prepared_copy(checkout: Path, corpus: Path, where: Path) -> Path:
    """A copy of the nanoGPT checkout with Tiny Shakespeare prepared by its own prepare.py."""
    work = where / "nanogpt"
    shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "out*"))
    data = work / "data" / "shakespeare_char"
    shutil.copy(corpus, data / "input.txt")
    subprocess.run(
        [sys.executable, "-c", PREPARE_OFFLINE], cwd=data, check=True, stdout=subprocess.DEVNULL
    )
    return work


def run_nanogpt(work: Path, target: float, recipe: list[str]) -> NanoRun:
    command = [sys.executable, "train.py", *recipe, f"--out_dir={work / 'out'}"]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line clocked when printed, not flushed
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, text=True, env=env)
    reached, vals = None, []
    for line in process.stdout:
        if match := NANOGPT_EVAL.match(line):
            print(f"{time.perf_counter() - start:8.1f} s  nanoGPT {line.rstrip()}", flush=True)
            vals.append(float(match.group(3)))
            if reached is None and vals[-1] <= target:
                reached = time.perf_counter() - start
    process.wait()
    nan = float("nan")
    return NanoRun(
        seconds_to_target=reached,
        wall=time.perf_counter() - start,
        final_val=vals[-1] if vals else nan,
        best_val=min(vals, default=nan),
        returncode=process.returncode,
    )


def main(argv: list[str] | None = None) -> None:
    options, extra = parse_with_passthrough(VersusOptions, argv, __doc__.split("\n")[0])
    checkout, corpus = Path(options.nanogpt), Path(options.corpus)
    for needed in ("train.py", "model.py", "data/shakespeare_char/prepare.py"):
        if not (checkout / needed).is_file():
            raise ConfigError(f"--nanogpt {checkout} is not a nanoGPT checkout (no {needed})")
    if not corpus.is_file():
        raise ConfigError(
            f"--corpus {corpus} does not exist: run `python -m data` (or train once) first, or "
            "give --corpus PATH"
        )
    check_shakespeare(corpus)
    device = "cuda" if options.recipe == "gpu" else "cpu"
    print(machine_line(device))
    print(
        f"nanoGPT {checkout} (checked against {NANOGPT_COMMIT}) against --config "
        f"{options.config}, target val loss {options.target}, extra options: {extra or 'none'}"
    )
    pairs = []
    with tempfile.TemporaryDirectory(prefix="versus-nanogpt-") as tmp:
        work = prepared_copy(checkout, corpus, Path(tmp))
        for i in range(options.pairs):
            theirs = run_nanogpt(work, options.target, RECIPES[options.recipe])
            reached = f"{theirs.seconds_to_target:.1f}" if theirs.seconds_to_target else "never"
            print(
                f"pair {i + 1}: nanoGPT to target {reached} s, whole {theirs.wall:.1f} s, "
                f"final val {theirs.final_val:.4f}",
                flush=True,
            )
            ours: Run = run_once(
                options.config, options.target, options.first_seed + i, extra, None
            )
            print(HEADER)
            print_run(ours)
            pairs.append({"nanogpt": asdict(theirs), "ours": asdict(ours)})
    ratios = [
        p["ours"]["seconds_to_target"] / p["nanogpt"]["seconds_to_target"]
        for p in pairs
        if p["ours"]["seconds_to_target"] and p["nanogpt"]["seconds_to_target"]
    ]
    if ratios:
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"seconds to target, ours / nanoGPT's, pair by pair: {shown}; "
            f"median {statistics.median(ratios):.2f}"
        )
    else:
        print("no pair where both reached the target")
    wholes = [p["ours"]["wall"] / p["nanogpt"]["wall"] for p in pairs]
    shown = ", ".join(f"{r:.2f}" for r in wholes)
    print(f"whole processes, ours / nanoGPT's: {shown}; median {statistics.median(wholes):.2f}")
    figures = {
        "config": options.config,
        "extra": extra,
        "target": options.target,
        "nanogpt_commit": NANOGPT_COMMIT,
        "nanogpt_recipe": RECIPES[options.recipe],
        "pairs": pairs,
    }
    label = options.config if not extra else f"{options.config}-ablation"
    write_record("versus_nanogpt", label, figures, device=device)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="versus_nanogpt.py"))
