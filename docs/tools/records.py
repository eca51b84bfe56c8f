"""The records under records/ as the documents read them, and the pieces of a table.

A record is one JSON file a benchmark wrote (benchmarks/recording.py); its machine's "kind" is
one of the two CPU kinds below or the GPU's name.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
# CHARGPT_RECORDS_DIR reads them elsewhere (a dry run of gpu_report.py, the tests)
RECORDS_DIR = Path(os.environ.get("CHARGPT_RECORDS_DIR") or ROOT / "records")
# the kinds of CPU the tables have a column for, as benchmarks/recording.py names them
AVX2 = "AVX2 CPU"
NATIVE_BF16 = "native-bf16 CPU"
CPU_KINDS = (AVX2, NATIVE_BF16)
Record = dict[str, Any]


def read_records() -> list[Record]:
    """Every record, oldest first, each with its file name under "file"."""
    records = []
    for path in sorted(RECORDS_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        record["file"] = f"records/{path.name}"
        record.setdefault("extra", [])  # the options given to train.py beyond the config
        records.append(record)
    return sorted(records, key=lambda r: r["date"])


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
