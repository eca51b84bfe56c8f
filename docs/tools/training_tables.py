"""The tables of training runs: the shipped configs, the race with nanoGPT, small.yaml's run,
the ablation, what an evaluation costs, and one GPU."""

from __future__ import annotations

from typing import Any

from records import CPU_KINDS, Record, link, median, newest, number, ratio, table
from training.command_line import load_config

# What each shipped config is for; its model column is read from the config itself.
CONFIG_PURPOSE = {
    "small": "the first run: `dtype: auto` (bf16 where native, fp32 elsewhere), Muon",
    "cpu_fast": "nanoGPT's CPU quality in about a third of its time",
    "nanogpt_cpu": "nanoGPT's CPU recipe, key for key: the baseline",
    "shakespeare_char": "the GPU recipe: nanoGPT's `train_shakespeare_char`",
    "gpu_fast": "nanoGPT's GPU quality in half its time, on one GPU",
    "tiny": "tests and smoke runs",
}


def model_summary(config_name: str) -> str:
    c = load_config(config_name).config
    positions = "RoPE" if c.pos_embedding == "rope" else "learned positions"
    return (
        f"{c.n_layer} layers, {c.n_embd} channels, {c.n_head} heads, {positions}, "
        f"block {c.block_size}, {c.max_iters} steps"
    )


def configs_cell(records: list[Record], config: str, kind: str, prefix: str) -> str:
    race = newest(records, benchmark="versus_nanogpt", config=config, extra=[], machine_kind=kind)
    ours = [p["ours"] for p in race["pairs"]] if race is not None else []
    to_target = median(r["seconds_to_target"] for r in ours)
    if to_target is not None:  # a race it won: its time to the target beside nanoGPT's
        theirs = [p["nanogpt"] for p in race["pairs"]]
        wall, nano = median(r["wall"] for r in ours), median(r["wall"] for r in theirs)
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


def render_first_run(records: list[Record], prefix: str) -> str:
    """One sentence: how long small.yaml's whole run takes on each kind of CPU measured."""
    said = []
    for kind in CPU_KINDS:
        run = newest(records, benchmark="time_to_loss", config="small", extra=[], machine_kind=kind)
        if run is not None:
            minutes = median(r["wall"] for r in run["runs"]) / 60
            native = run["machine"]["native_bf16"]
            cpu = "CPU with native bf16" if native else "CPU without native bf16 (fp32)"
            said.append(f"{minutes:.1f} minutes on a 2-core {cpu} ({link(run, prefix)})")
    return "`small.yaml` takes " + ("; ".join(said) or "(not measured yet)") + ".\n"


def render_versus(records: list[Record], prefix: str) -> str:
    out = []
    for kind in CPU_KINDS:
        race = newest(
            records, benchmark="versus_nanogpt", config="cpu_fast", extra=[], machine_kind=kind
        )
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


def render_small_trade(records: list[Record], prefix: str) -> str:
    """small.yaml raced whole against nanoGPT's whole CPU run: as shipped and cut shorter."""
    rows, shipped = [], load_config("small").config.max_iters
    for race in records:
        if race["benchmark"] != "versus_nanogpt" or race.get("config") != "small":
            continue
        pairs, extra = race["pairs"], race["extra"]
        steps = extra[extra.index("--max_iters") + 1] if "--max_iters" in extra else shipped
        rows.append(
            [
                f"{steps}" + (f" (`{' '.join(extra)}`)" if extra else " (as shipped)"),
                f"{race['machine']['kind']}, {race['machine']['capability']}",
                str(len(pairs)),
                number(median(p["nanogpt"]["wall"] for p in pairs), ".0f"),
                number(median(p["ours"]["wall"] for p in pairs), ".0f"),
                number(
                    median(ratio(p["ours"]["wall"], p["nanogpt"]["wall"]) for p in pairs), ".2f"
                ),
                number(median(p["ours"]["best_val"] for p in pairs), ".4f"),
                number(median(p["ours"]["exact_val"] for p in pairs), ".4f"),
                link(race, prefix),
            ]
        )
    if not rows:
        return "Not measured.\n"
    header = [
        "steps",
        "CPU",
        "pairs",
        "nanoGPT whole (s)",
        "ours whole (s)",
        "ratio, whole",
        "best val",
        "exact val",
        "record",
    ]
    return table(header, rows) + "\nMedians over the pairs; each pair ran one after the other.\n"


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
        race = newest(
            records, benchmark="versus_nanogpt", config="cpu_fast", extra=[], machine_kind=kind
        )
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
            f"{100 * record['extra_share']:.1f}%", loss_point(record), link(record, prefix),
        ])  # fmt: skip
    if not rows:
        return "Not measured.\n"
    header = [
        "config", "machine", "options", "step (ms)", "loss estimate (ms)",
        "training thread: sample + look inside + checkpoint copy (ms)",
        "background: views + checkpoint (ms)", "share of the run",
        "a loss point between evaluations (ms)", "record",
    ]  # fmt: skip
    return table(header, rows)


def loss_point(record: Record) -> str:
    """What one loss point (loss_interval) costs, in ms and training steps, where measured."""
    if "loss_point_ms" not in record:
        return "not measured"
    ms = record["loss_point_ms"]
    return f"{ms:,.0f} = {ms / record['step_ms']:.1f} steps"


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
