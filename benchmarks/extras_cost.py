"""What an evaluation's extras (the sample, the views for TensorBoard) cost a whole run.

    python benchmarks/extras_cost.py --pairs 3 -- --config small --max_iters 300 --eval_interval 20

Runs `python train.py ARGS` twice per pair, alternating: as given (the extras as the config has
them), and with `--sample_chars 0 --inspect false` (the evaluations estimate the losses alone,
and both write the same checkpoints). Clocks each whole process and prints the ratio of each
pair and their median: the extras' share is that ratio minus one. Writes a record under records/.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from common import machine_line, parse_with_passthrough
from recording import ROOT, write_record

from infra.cli import option
from infra.errors import run_main

WITHOUT = ["--sample_chars", "0", "--inspect", "false"]


@dataclass(frozen=True)
class ExtrasOptions:
    pairs: int = option(3, "alternating pairs of runs")


def seconds(argv: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out_dir:
        command = [sys.executable, "train.py", *argv, "--out_dir", out_dir, "--overwrite"]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args, train_args = parse_with_passthrough(ExtrasOptions, argv, __doc__.split("\n")[0])
    print(machine_line())
    with_extras, without = [], []
    for pair in range(args.pairs):
        with_extras.append(seconds(train_args))
        without.append(seconds(train_args + WITHOUT))
        print(f"pair {pair + 1}: {with_extras[-1]:.1f} s with the extras, "
              f"{without[-1]:.1f} s without: {with_extras[-1] / without[-1]:.3f}x")  # fmt: skip
    ratios = [a / b for a, b in zip(with_extras, without, strict=True)]
    low, high = min(ratios) - 1, max(ratios) - 1
    print(f"the extras' share of the run: {statistics.median(ratios) - 1:+.1%} "
          f"(median of {args.pairs} pairs; {low:+.1%} to {high:+.1%})")  # fmt: skip
    figures = {"train_args": train_args, "with_extras_s": with_extras, "without_s": without,
               "share": statistics.median(ratios) - 1}  # fmt: skip
    write_record("extras_cost", "-".join(a.lstrip("-") for a in train_args[:2]), figures)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="extras_cost.py"))
