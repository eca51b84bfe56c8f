"""Generation speed as a user sees it: `python sample.py` timed from outside, cached and plain.

    python train.py --config shakespeare_char --device cpu --max_iters 1 --eval_iters 1 \\
        --out_dir out/sc_1step          # a checkpoint of that size (speed does not need training)
    python benchmarks/sample_cli_speed.py --ckpt out/sc_1step

For each path (the KV cache, and --no_kv_cache) it times the whole process for --new characters
and for 1 character, alternating the four, and takes the difference: the time the characters
themselves took, without Python start-up, imports and loading the checkpoint. Prints each path's
characters per second (median over --repeats, and the spread) and the ratio of the two, pair by
pair.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import machine_line
from recording import write_record

from infra.cli import option, parse_into
from infra.errors import ConfigError, run_main

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SampleCliOptions:
    ckpt: str = option(help="checkpoint or run dir")
    new: int = option(400, "new characters in the long run")
    repeats: int = option(3, "runs of each of the four processes")
    batch: int = option(1, "samples at once (--num_samples)")
    device: str = option("cpu", "cpu, cuda, cuda:N or mps")


def process_seconds(options: SampleCliOptions, new: int, cached: bool) -> float:
    command = [
        sys.executable,
        str(ROOT / "sample.py"),
        "--ckpt",
        options.ckpt,
        "--max_new_tokens",
        str(new),
        "--num_samples",
        str(options.batch),
        "--device",
        options.device,
        "--stream",
        "false",
        "--kv_cache" if cached else "--no_kv_cache",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    options = parse_into(SampleCliOptions, argv, __doc__.split("\n")[0])
    if not Path(options.ckpt).exists():
        raise ConfigError(f"--ckpt {options.ckpt} does not exist (see this script's docstring)")
    print(machine_line())
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(options.repeats):
        for cached in (True, False):
            long = process_seconds(options, options.new, cached)
            short = process_seconds(options, 1, cached)
            rates[cached].append((options.new - 1) * options.batch / (long - short))
    for cached, name in ((True, "KV cache"), (False, "no cache")):
        r = rates[cached]
        print(
            f"{name}: {statistics.median(r):,.0f} chars/s "
            f"({min(r):,.0f} to {max(r):,.0f} over {len(r)} runs)"
        )
    ratios = [c / p for c, p in zip(rates[True], rates[False], strict=True)]
    print(
        f"speed-up: {statistics.median(ratios):.1f}x "
        f"({min(ratios):.1f}x to {max(ratios):.1f}x, pair by pair)"
    )
    # each pair, in order: runs of this command can be pooled into one median over more pairs
    print("pairs: " + " ".join(f"{r:.2f}x" for r in ratios))
    figures = {"new": options.new, "batch": options.batch, "device": options.device}
    pairs = [
        {"cached_chars_per_sec": c, "plain_chars_per_sec": p}
        for c, p in zip(rates[True], rates[False], strict=True)
    ]
    write_record("sample_cli_speed", f"batch{options.batch}", {**figures, "pairs": pairs})


if __name__ == "__main__":
    sys.exit(run_main(main, prog="sample_cli_speed.py"))
