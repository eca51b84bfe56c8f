"""The tables that are not about training: sampling speed and the explorer page's size."""

from __future__ import annotations

import statistics

from records import Record, link, median, newest, table


def cpu_label(record: Record) -> str:
    """'AVX512 CPU, native bf16': the vector instructions the sampling step's speed turns on."""
    machine = record["machine"]
    return f"{machine['capability']} CPU" + (", native bf16" if machine["native_bf16"] else "")


def render_sampling(records: list[Record], prefix: str) -> str:
    """The newest record of each kind of CPU (capability and native bf16)."""
    found = {}
    for record in records:
        if record["benchmark"] == "sample_cli_speed" and record.get("batch") == 1:
            label = cpu_label(record)
            if label not in found or record["date"] > found[label]["date"]:
                found[label] = record
    rows = []
    for label, run in sorted(found.items()):
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
            [label, f"{cached:,.0f}", f"{plain:,.0f}", speedup, str(pairs), link(run, prefix)]
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


def render_sweep_speed(records: list[Record], prefix: str) -> str:
    """A table per machine and config: variant-steps per second of N variants one after another
    and as one stack (benchmarks/sweep_speed.py), the newest record of each."""
    found = {}
    for record in records:
        if record["benchmark"] == "sweep_speed" and not record.get("dry"):
            found[(record["machine"]["kind"], record["config"])] = record  # oldest first
    if not found:
        return "Not measured yet: `python benchmarks/sweep_speed.py` writes the records.\n"
    out = []
    for (kind, config), record in sorted(found.items()):
        rows = [
            [str(r["variants"]), "yes" if r["compiled"] else "no",
             f"{r['alone_steps_per_s']:,.1f}", f"{r['stacked_steps_per_s']:,.1f}",
             f"{r['speedup']:.2f}x",
             "—" if r["stacked_peak_gib"] is None else f"{r['stacked_peak_gib']:.2f}"]
            for r in record["rows"]
        ]  # fmt: skip
        out.append(
            f"**{kind}**, `{config}.yaml`, {record['attn_impl']} attention, {record['dtype']} "
            f"({link(record, prefix)})\n\n"
        )
        header = ["variants", "compiled", "one after another (variant-steps/s)", "stacked",
                  "stacked / one after another", "stacked peak GiB"]  # fmt: skip
        out.append(table(header, rows) + "\n")
    return "".join(out).rstrip("\n") + "\n"


def render_attention_kernel(records: list[Record], prefix: str) -> str:
    """The newest attention_kernel record of each CPU kind, config and precision."""
    found = {}
    for record in records:
        if record["benchmark"] == "attention_kernel":
            key = (cpu_label(record), record["config"], record["dtype"])
            if key not in found or record["date"] > found[key]["date"]:
                found[key] = record
    rows = [
        [label, f"`{config}.yaml`", dtype, f"{median(r['ms']['math']):.0f}",
         f"{median(r['ms']['sdpa']):.0f}", f"{r['sdpa_over_math']:.2f}x", link(r, prefix)]
        for (label, config, dtype), r in sorted(found.items())
    ]  # fmt: skip
    header = ["machine", "config", "precision", "math (ms a step)", "sdpa (ms a step)",
              "sdpa / math, median of pairs", "record"]  # fmt: skip
    return table(header, rows) if rows else "Not measured yet.\n"


def render_extras_cost(records: list[Record], prefix: str) -> str:
    """The newest extras_cost record of each CPU kind and command."""
    found = {}
    for record in records:
        if record["benchmark"] == "extras_cost":
            key = (cpu_label(record), " ".join(record["train_args"]))
            if key not in found or record["date"] > found[key]["date"]:
                found[key] = record
    rows = []
    for (label, args), r in sorted(found.items()):
        ratios = [a / b - 1 for a, b in zip(r["with_extras_s"], r["without_s"], strict=True)]
        rows.append([label, f"`{args}`", f"{median(r['with_extras_s']):.1f}",
                     f"{median(r['without_s']):.1f}",
                     f"{r['share']:+.1%} ({min(ratios):+.1%} to {max(ratios):+.1%})",
                     str(len(ratios)), link(r, prefix)])  # fmt: skip
    header = ["machine", "train.py", "with the extras (s)", "without (s)",
              "extras' share, median of pairs", "pairs", "record"]  # fmt: skip
    return table(header, rows) if rows else "Not measured yet.\n"
