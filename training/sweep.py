"""A sweep: the variants of one config that a grid of values describes, each an ordinary run in a
directory of its own under the sweep's (`learning_rate=0.003,seed=2/`), the groups they train in,
and the table that lays their results side by side.

The sweep's directory holds sweep.json, its plan (every variant's name and config), written once
its checks pass, so `--resume` on the directory can start the variants a stopped sweep never
began, and continue the others from their own last.pt; and results.md and results.csv.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from checkpoint import BEST, load_checkpoint
from infra.errors import RunDirError
from infra.files import refuse_link, write_atomic
from training.command_line import SWEEP_FILE, TrainArgs, build_config, read_plan
from training.config import DATA_PATH_KEYS, TrainConfig
from training.rundir import holds_run

RESULTS = ("results.md", "results.csv")
ROWS = ".rows"  # each variant's row of the table, as it finished
COLUMNS = ("best_val", "best_iter", "val_exact", "iters", "seconds", "stopped")  # after the values
# What variants of one stack may differ in: the optimizer's and the schedule's numbers (each
# variant's optimizers are its own) and the seed (its initial weights, batches and dropout).
PER_VARIANT = ("seed", "learning_rate", "min_lr_ratio", "lr_schedule", "warmup_iters",
               "lr_decay_iters", "cooldown_frac", "weight_decay", "beta1", "beta2",
               "muon_lr_ratio", "muon_momentum", "grad_clip", "out_dir")  # fmt: skip


def variant_name(values: dict[str, Any]) -> str:
    """A variant's directory name: its varied keys and values, e.g. learning_rate=0.003,seed=2."""
    shown = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in values.items()}
    return ",".join(f"{key}={value}" for key, value in shown.items())


@dataclass
class Variant:
    name: str
    values: dict[str, Any]  # its varied keys' values
    args: TrainArgs  # what it trains: a fresh run, or the resume of its own


def plan_sweep(args: TrainArgs, first: bool = True) -> tuple[Path, list[Variant]]:
    """The sweep's directory and its variants, in the grid's order. A fresh sweep refuses a
    directory that holds a run or another sweep (unless overwrite, which replaces each variant's
    run as --overwrite does); a resumed one takes its plan from sweep.json, the data's paths
    only from the settings given. first: the process that checks the directory and writes the
    plan (under torchrun, rank 0's)."""
    if args.resume is not None:
        sweep_dir = Path(args.resume)
        plan = read_plan(sweep_dir)
        variants = []
        for name, config in plan["variants"].items():
            run_dir = sweep_dir / name
            values = {key: config[key] for key in plan["varied"]}
            if holds_run(run_dir):
                request = replace(args, resume=str(run_dir), sweep={})
            else:  # never began: from its planned config, with the data named now
                config = {k: v for k, v in config.items() if k not in DATA_PATH_KEYS}
                fresh = build_config({**config, **args.settings}, f"{SWEEP_FILE} with the settings")
                request = replace(args, config=fresh, resume=None, sweep={})
            variants.append(Variant(name, values, replace(request, hparams=tuple(values))))
        return sweep_dir, variants
    base, sweep_dir = args.config, Path(args.config.out_dir)
    if (sweep_dir / SWEEP_FILE).exists():
        read_plan(sweep_dir)  # a file of that name that is not a sweep's plan is someone's own
    elif any((sweep_dir / name).exists() for name in (*RESULTS, ROWS)):
        raise RunDirError(f"{sweep_dir} holds files of a sweep's names but no sweep's plan: "
                          "they are not this project's; give another --out_dir")  # fmt: skip
    planned = (sweep_dir / SWEEP_FILE).exists() and first
    if holds_run(sweep_dir) or (planned and not args.overwrite):
        raise RunDirError(
            f"{sweep_dir} already holds a {'run' if holds_run(sweep_dir) else 'sweep'}; continue "
            "it with --resume, start afresh with --overwrite, or give another --out_dir"
        )
    variants = []
    for combination in itertools.product(*args.sweep.values()):
        values = dict(zip(args.sweep, combination, strict=True))
        name = variant_name(values)
        config = build_config(
            {**base.to_dict(), **values, "out_dir": str(sweep_dir / name)}, f"sweep {name}"
        )
        request = replace(args, config=config, sweep={}, hparams=tuple(values))
        variants.append(Variant(name, values, request))
    return sweep_dir, variants


def write_plan(sweep_dir: Path, variants: list[Variant], varied: dict[str, list]) -> None:
    """sweep.json, for a fresh sweep; the rows of a sweep it replaces (--overwrite) go."""
    plan = {"varied": list(varied), "variants": {v.name: v.args.config.to_dict() for v in variants}}
    write_atomic(sweep_dir / SWEEP_FILE, lambda tmp: tmp.write_text(json.dumps(plan, indent=1)))
    refuse_link(sweep_dir / ROWS)
    for old in (sweep_dir / ROWS).glob("*.json"):
        old.unlink()


def stack_groups(variants: dict[int, tuple[TrainConfig, int]]) -> list[list[int]]:
    """The variants (index: its config and the iteration it stands at) that can train as one
    stack: those whose configs agree on every key but PER_VARIANT's, at the same iteration."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (config, iteration) in variants.items():
        shared = {k: v for k, v in config.to_dict().items() if k not in PER_VARIANT}
        groups[json.dumps([shared, iteration], sort_keys=True, default=str)].append(i)
    return list(groups.values())


def result_row(variant: Variant, run: Any, seconds: float) -> dict[str, Any]:
    """A variant's line of the table: its values, its best val loss and the iteration of best.pt,
    its exact val loss, its iterations, the time it trained, and why it stopped early, if it did."""
    best = Path(run.out_dir) / BEST
    best_iter = load_checkpoint(best)["iter_num"] if best.is_file() else None
    figures = (run.best_val_loss, best_iter, run.val_loss_exact, run.iter_num, round(seconds, 1),
               run.stopped or "")  # fmt: skip
    return {**variant.values, **dict(zip(COLUMNS, figures, strict=True))}


def write_results(sweep_dir: Path, rows: list[dict[str, Any]]) -> str:
    """rows kept in the sweep's .rows/ (one file a variant, so that processes sharing a sweep,
    or a resumed one, add theirs), and results.md and results.csv from all of them, sorted by
    best val loss; returns the Markdown table."""
    kept = sweep_dir / ROWS
    for row in rows:
        name = variant_name({k: v for k, v in row.items() if k not in COLUMNS})
        write_atomic(kept / f"{name}.json", lambda tmp, row=row: tmp.write_text(json.dumps(row)))
    rows = [json.loads(path.read_text()) for path in sorted(kept.glob("*.json"))]
    rows.sort(key=lambda r: (not math.isfinite(r["best_val"]), r["best_val"]))
    header = list(rows[0])

    def cell(key: str, value: Any) -> str:
        if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
            return "—"  # not measured, or no evaluation yet
        if key in ("best_val", "val_exact"):
            return f"{value:.4f}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(k, r[k]) for k in header) + " |" for r in rows]
    markdown = "\n".join(lines) + "\n"
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(sweep_dir / RESULTS[0], lambda tmp: tmp.write_text(markdown))
    write_atomic(sweep_dir / RESULTS[1], lambda tmp: tmp.write_text(table.getvalue()))
    return markdown
