"""The tables of README.md and docs/performance.md, rendered from the records under records/.

    python benchmarks/render_docs.py          # rewrite the tables in place
    python benchmarks/render_docs.py --check  # exit 1 if a table differs from the records

A table sits between `<!-- records:NAME -->` and `<!-- /records -->` in a document; everything
between the two markers is generated. For each table the newest record of each kind and machine
is used, so a new measurement replaces the old figure, and a test (tests/test_docs.py) fails when
a document and the records disagree.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording import AVX2, NATIVE_BF16, ROOT, read_records

from infra.cli import option, parse_into
from infra.errors import UserError, run_main
from training.command_line import load_config

DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "performance.md")
MARKER = re.compile(r"(<!-- records:([\w-]+) -->\n)(.*?)(<!-- /records -->)", re.DOTALL)
CPU_KINDS = (AVX2, NATIVE_BF16)
Record = dict[str, Any]

# What each shipped config is for; its model column is read from the config itself.
CONFIG_PURPOSE = {
    "small": "the first run: `dtype: auto` (bf16 where native, fp32 elsewhere), Muon",
    "cpu_fast": "nanoGPT's CPU quality in about a third of its time",
    "nanogpt_cpu": "nanoGPT's CPU recipe, key for key: the baseline",
    "shakespeare_char": "the GPU recipe: nanoGPT's `train_shakespeare_char`",
    "gpu_fast": "nanoGPT's GPU quality in half its time, on one GPU",
    "tiny": "tests and smoke runs",
}


# ---- reading the records ---------------------------------------------------------------------


def newest(records: Iterable[Record], **match: Any) -> Record | None:
    """The newest record whose fields (or machine fields, as machine_kind=...) equal match."""
    found = None
    for record in records:
        fields = {**record, **{f"machine_{k}": v for k, v in record.get("machine", {}).items()}}
        if all(fields.get(key) == value for key, value in match.items()):
            found = record  # records come oldest first
    return found


def median(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def link(record: Record, prefix: str) -> str:
    return f"[{record['date'][:10]}, {record['commit']}]({prefix}{record['file']})"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def number(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---- the tables ------------------------------------------------------------------------------


def model_summary(config_name: str) -> str:
    c = load_config(["--config", config_name]).config
    positions = "RoPE" if c.pos_embedding == "rope" else "learned positions"
    return (
        f"{c.n_layer} layers, {c.n_embd} channels, {c.n_head} heads, {positions}, "
        f"block {c.block_size}, {c.max_iters} steps"
    )


def configs_cell(records: list[Record], config: str, kind: str, prefix: str) -> str:
    race = newest(records, benchmark="versus_nanogpt", config=config, machine_kind=kind)
    if race is not None:
        ours = [p["ours"] for p in race["pairs"]]
        theirs = [p["nanogpt"] for p in race["pairs"]]
        wall, nano = median(r["wall"] for r in ours), median(r["wall"] for r in theirs)
        to_target = median(r["seconds_to_target"] for r in ours)
        return (
            f"val ≤ {race['target']} in {number(to_target, '.0f')} s ({number(wall, '.0f')} s in "
            f"all); nanoGPT {number(nano, '.0f')} s ({link(race, prefix)})"
        )
    run = newest(records, benchmark="time_to_loss", config=config, extra=[], machine_kind=kind)
    if run is None:
        return "not measured"
    wall = median(r["wall"] for r in run["runs"])
    best = median(r["best_val"] for r in run["runs"])
    exact = median(r["exact_val"] for r in run["runs"])
    exact_text = f", exact {number(exact, '.3f')}" if exact is not None else ""
    return f"val {number(best, '.3f')}{exact_text} in {number(wall, '.0f')} s ({link(run, prefix)})"


def render_configs(records: list[Record], prefix: str) -> str:
    rows = []
    for name, purpose in CONFIG_PURPOSE.items():
        cells = [configs_cell(records, name, kind, prefix) for kind in CPU_KINDS]
        gpu = [r for r in records if r.get("config") == name and r["machine"].get("gpu")]
        cells.append(configs_cell(gpu, name, gpu[-1]["machine"]["kind"], prefix) if gpu else "—")
        rows.append([f"`{name}.yaml`", purpose, model_summary(name), *cells])
    header = ["config", "for", "model", "2-core AVX2 CPU", "2-core native-bf16 CPU", "GPU"]
    note = "Median over the seeds of the record; time is the whole process, start-up included.\n"
    return table(header, rows) + "\n" + note


def render_versus(records: list[Record], prefix: str) -> str:
    out = []
    for kind in CPU_KINDS:
        race = newest(records, benchmark="versus_nanogpt", config="cpu_fast", machine_kind=kind)
        if race is None:
            out.append(f"**{kind}**: not measured.\n")
            continue
        rows = []
        for pair in race["pairs"]:
            ours, theirs = pair["ours"], pair["nanogpt"]
            rows.append(
                [
                    str(ours["seed"]),
                    number(theirs["seconds_to_target"], ".1f"),
                    number(ours["seconds_to_target"], ".1f"),
                    number(ratio(ours["seconds_to_target"], theirs["seconds_to_target"]), ".2f"),
                    number(ratio(ours["wall"], theirs["wall"]), ".2f"),
                    number(theirs["final_val"], ".4f"),
                    number(ours["final_val"], ".4f"),
                    number(ours["exact_val"], ".4f"),
                ]
            )
        ratios = [
            ratio(p["ours"]["seconds_to_target"], p["nanogpt"]["seconds_to_target"])
            for p in race["pairs"]
        ]
        header = [
            "our seed",
            "nanoGPT: s to target",
            "ours: s to target",
            "ratio",
            "whole-process ratio",
            "nanoGPT final val",
            "our final val",
            "our exact val",
        ]
        out.append(
            f"**{kind}** ({race['machine']['cpu']}, {race['machine']['capability']}; "
            f"{link(race, prefix)}): median ratio **{number(median(ratios), '.2f')}**\n\n"
            + table(header, rows)
        )
    return "\n".join(out)


def render_small(records: list[Record], prefix: str) -> str:
    out = []
    for kind in CPU_KINDS:
        run = newest(records, benchmark="time_to_loss", config="small", extra=[], machine_kind=kind)
        if run is None:
            out.append(f"**{kind}**: not measured.\n")
            continue
        rows = [
            [
                str(r["seed"]),
                number(r["wall"], ".1f"),
                number(r["best_val"], ".4f"),
                number(r["exact_val"], ".4f"),
                number(r["tokens_per_sec"], ",.0f"),
                number(r["peak_memory_gib"], ".2f"),
            ]
            for r in run["runs"]
        ]
        header = ["seed", "whole process (s)", "best val", "exact val", "tokens/s", "peak RSS GiB"]
        out.append(
            f"**{kind}** ({run['machine']['cpu']}, {run['machine']['capability']}; "
            f"{link(run, prefix)})\n\n" + table(header, rows)
        )
    return "\n".join(out)


def render_ablation(records: list[Record], prefix: str) -> str:
    out = []
    for kind in CPU_KINDS:
        runs = [
            r
            for r in records
            if r["benchmark"] == "time_to_loss"
            and r.get("config") == "cpu_fast"
            and r["machine"]["kind"] == kind
            and r.get("extra")
        ]
        if not runs:
            out.append(f"**{kind}**: not measured.\n")
            continue
        race = newest(records, benchmark="versus_nanogpt", config="cpu_fast", machine_kind=kind)
        rows = []
        if race is not None:
            first = race["pairs"][0]["ours"]
            rows.append(
                ["nothing (the first pair above)", *ablation_cells(first), link(race, prefix)]
            )
        latest: dict[str, Record] = {}
        for r in runs:
            latest[" ".join(r["extra"])] = r
        for extra, r in latest.items():
            rows.append([f"`{extra}`", *ablation_cells(r["runs"][0]), link(r, prefix)])
        header = [
            "changed in `cpu_fast.yaml`",
            "s to val ≤ 1.886",
            "whole (s)",
            "final val",
            "exact val",
            "tokens/s",
            "record",
        ]
        out.append(f"**{kind}**, seed 1337, one run each\n\n" + table(header, rows))
    return "\n".join(out)


def ablation_cells(run: dict[str, Any]) -> list[str]:
    reached = run["seconds_to_target"]
    return [
        "not reached" if reached is None else f"{reached:.1f}",
        number(run["wall"], ".1f"),
        number(run["final_val"], ".4f"),
        number(run["exact_val"], ".4f"),
        number(run["tokens_per_sec"], ",.0f"),
    ]


def render_sampling(records: list[Record], prefix: str) -> str:
    rows = []
    for kind in CPU_KINDS:
        run = newest(records, benchmark="sample_cli_speed", batch=1, machine_kind=kind)
        if run is None:
            rows.append([kind, "not measured", "", "", "", ""])
            continue
        if "summary" in run:
            s = run["summary"]
            cached, plain, pairs = s["cached_chars_per_sec"], s["plain_chars_per_sec"], s["pairs"]
            speedup = (
                f"{s['speedup_median']:.1f}x ({s['speedup_min']:.1f}x to {s['speedup_max']:.1f}x)"
            )
        else:
            cached = median(p["cached_chars_per_sec"] for p in run["pairs"])
            plain = median(p["plain_chars_per_sec"] for p in run["pairs"])
            ratios = [p["cached_chars_per_sec"] / p["plain_chars_per_sec"] for p in run["pairs"]]
            low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
            speedup = f"{mid:.1f}x ({low:.1f}x to {high:.1f}x)"
            pairs = len(run["pairs"])
        rows.append(
            [kind, f"{cached:,.0f}", f"{plain:,.0f}", speedup, str(pairs), link(run, prefix)]
        )
    header = [
        "machine",
        "KV cache (chars/s)",
        "no cache (chars/s)",
        "speed-up, median of pairs",
        "pairs",
        "record",
    ]
    return table(header, rows)


def render_not_adopted(records: list[Record], prefix: str) -> str:
    record = newest(records, benchmark="not_adopted")
    if record is None:
        return "None recorded.\n"
    rows = [[e["idea"], e["machine"], e["measured"], e["why"]] for e in record["entries"]]
    return table(["idea", "machine", "measured", "why not"], rows) + (
        f"\nFrom {link(record, prefix)}.\n"
    )


def render_explorer(records: list[Record], prefix: str) -> str:
    record = newest(records, benchmark="explorer_size")
    if record is None:
        return "The page's size and time to write: not measured.\n"
    return (
        f"For a {record['chars']}-character text on `small.yaml`'s model ({record['model']}), "
        f"the page is {record['bytes'] / 1e6:.1f} MB and takes "
        f"{statistics.median(record['seconds']):.1f} s to write, on a 2-core "
        f"{record['machine']['kind']} ({link(record, prefix)}).\n"
    )


def render_evaluation_cost(records: list[Record], prefix: str) -> str:
    rows = []
    for record in records:
        if record["benchmark"] != "evaluation_cost":
            continue
        if record is not newest(
            records, benchmark="evaluation_cost", config=record["config"],
            machine_kind=record["machine"]["kind"],
        ):  # fmt: skip
            continue
        phases = record["phases_ms"]
        training = ("sample", "look inside (device)", "checkpoint copy to CPU")
        background = ("draw and write views", "write checkpoint")
        overrides = " ".join(f"--{k} {v}" for k, v in record["overrides"].items()) or "—"
        rows.append([
            f"`{record['config']}.yaml`", record["machine"]["kind"], overrides,
            f"{record['step_ms']:,.1f}", f"{phases['loss estimate']:,.0f}",
            " + ".join(f"{phases[k]:,.0f}" for k in training),
            " + ".join(f"{phases[k]:,.0f}" for k in background),
            f"{100 * record['extra_share']:.1f}%", link(record, prefix),
        ])  # fmt: skip
    if not rows:
        return "Not measured.\n"
    header = [
        "config", "machine", "options", "step (ms)", "loss estimate (ms)",
        "training thread: sample + look inside + checkpoint copy (ms)",
        "background: views + checkpoint (ms)", "share of the run", "record",
    ]  # fmt: skip
    return table(header, rows)


def render_gpu(records: list[Record], prefix: str) -> str:
    gpu = [r for r in records if r.get("machine", {}).get("gpu")]
    if not gpu:
        return (
            "Not measured on a GPU yet: `python benchmarks/gpu_report.py` on a machine with one "
            "writes the records this section is rendered from.\n"
        )
    rows = []
    for config in ("shakespeare_char", "gpu_fast"):
        run = newest(gpu, benchmark="time_to_loss", config=config, extra=[])
        if run is None:
            rows.append([f"`{config}.yaml`", "not measured", "", "", "", "", ""])
            continue
        runs = run["runs"]
        reached = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
        rows.append([
            f"`{config}.yaml`", run["machine"]["kind"],
            f"{len(reached)} of {len(runs)}, {number(median(reached), '.0f')} s",
            f"{number(median(r['wall'] for r in runs), '.0f')} s",
            f"{number(median(r['best_val'] for r in runs), '.4f')} / "
            f"{number(median(r['exact_val'] for r in runs), '.4f')}",
            f"{number(median(r['tokens_per_sec'] for r in runs), ',.0f')}, "
            f"MFU {number(median(r['mfu_percent'] for r in runs), '.1f')}%",
            link(run, prefix),
        ])  # fmt: skip
    header = [
        "config", "GPU", "val <= 1.47 (runs, median s)", "whole run", "best / exact val",
        "tokens/s", "record",
    ]  # fmt: skip
    text = table(header, rows)
    steps = [
        f"{'compiled' if r['compiled'] else 'eager'} {r['step_ms']:.1f} ms ({link(r, prefix)})"
        for compiled in (False, True)
        if (r := newest(gpu, benchmark="train_speed", config="shakespeare_char", compiled=compiled))
    ]
    if steps:
        text += f"\nThe shakespeare_char step for 16,384 tokens: {', '.join(steps)}.\n"
    sampling = newest(gpu, benchmark="sample_speed")
    if sampling is not None:
        one = next(r for r in sampling["rows"] if r["batch"] == 1)
        text += (
            f"\nSampling at batch 1 ({sampling['model']} model, fp32): "
            f"{one['cached_chars_per_sec']:,.0f} characters/s with the cache replayed as a CUDA "
            f"graph, {one['plain_chars_per_sec']:,.0f} without the cache "
            f"({link(sampling, prefix)}).\n"
        )
    return text


RENDERERS: dict[str, Callable[[list[Record], str], str]] = {
    "evaluation-cost": render_evaluation_cost,
    "gpu": render_gpu,
    "explorer": render_explorer,
    "configs": render_configs,
    "versus-nanogpt": render_versus,
    "small": render_small,
    "ablation": render_ablation,
    "sampling": render_sampling,
    "not-adopted": render_not_adopted,
}


# ---- the documents ---------------------------------------------------------------------------


def render(text: str, records: list[Record], prefix: str) -> str:
    """text with every marked table rendered anew."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise UserError(f"unknown table <!-- records:{name} -->; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name](records, prefix) + match.group(4)

    return MARKER.sub(replace, text)


def stale_documents(documents: Iterable[Path] = DOCUMENTS) -> list[Path]:
    """The documents whose tables differ from what the records give."""
    records = read_records()
    stale = []
    for path in documents:
        prefix = "../" if path.parent.name == "docs" else ""
        text = path.read_text(encoding="utf-8")
        if render(text, records, prefix) != text:
            stale.append(path)
    return stale


@dataclass(frozen=True)
class RenderOptions:
    check: bool = option(False, "only check: exit 1 if a table differs from the records")


def main(argv: list[str] | None = None) -> int:
    options = parse_into(RenderOptions, argv, __doc__.split("\n")[0])
    records = read_records()
    if options.check:
        stale = stale_documents()
        for path in stale:
            print(
                f"{path.relative_to(ROOT)}: a table differs from records/; run "
                "python benchmarks/render_docs.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in DOCUMENTS:
        prefix = "../" if path.parent.name == "docs" else ""
        text = path.read_text(encoding="utf-8")
        new = render(text, records, prefix)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="render_docs.py"))
