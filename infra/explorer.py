"""The attention explorer: one self-contained HTML page (data, script and style inline, no
network) over a text and what a model's heads attend to in it. The numbers come from
`model.attention_maps.attention_over_text`; the page makes the weights from the scores with the
same softmax, and shows them three ways (infra/explorer.html): the text, shaded by the weights of
the character pointed at; every layer and head as a grid; and the formula behind one row."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TEMPLATE = Path(__file__).with_name("explorer.html")


def _packed(array: np.ndarray) -> str:
    """array's bytes, little-endian as the page reads them, in base64."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return base64.b64encode(little.tobytes()).decode()


def explorer_data(attention: dict, chars: Sequence[str], prompt_length: int) -> dict:
    """The page's data: scores as one float32 array (layer, head, t, s = start[t] .. t), each
    window's values as float16 (layer, head, position, channel), the rest as JSON."""
    scores = np.array(
        [s for layer in attention["scores"] for head in layer for row in head for s in row],
        dtype=np.float32,
    )
    windows, values, offset = [], [], 0
    for window in attention["windows"]:
        block = np.array(window["values"], dtype=np.float16)  # (layer, head, position, hs)
        windows.append({"start": window["start"], "end": window["end"], "offset": offset})
        values.append(block.ravel())
        offset += block.size
    return {
        "chars": list(chars),
        "ids": attention["ids"],
        "prompt_length": prompt_length,
        "start": attention["start"],
        "n_layer": len(attention["scores"]),
        "n_head": len(attention["scores"][0]),
        "head_size": attention["head_size"],
        "scores": _packed(scores),
        "values": _packed(np.concatenate(values).view(np.uint16)),
        "windows": windows,
        "top_ids": attention["top_ids"],
        "top_probs": [[round(p, 4) for p in row] for row in attention["top_probs"]],
    }


def explorer_html(attention: dict, chars: Sequence[str], prompt_length: int, title: str) -> str:
    """The whole page, ready to write to a file."""
    data = json.dumps(explorer_data(attention, chars, prompt_length), separators=(",", ":"))
    data = data.replace("</", "<\\/")  # nothing in the data can close its <script>
    page = TEMPLATE.read_text(encoding="utf-8")
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return page.replace("__TITLE__", escaped).replace("__DATA__", data)
