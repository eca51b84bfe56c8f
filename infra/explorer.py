"""The attention explorer: one self-contained HTML page (data, script and style inline, no
network) over a text and what a model's heads attend to in it. The numbers come from
`model.attention_maps.attention_over_text`; the page makes the weights from the scores with the
same softmax, and shows them three ways (infra/explorer.html): the text, shaded by the weights of
the character pointed at; every layer and head as a grid; and the formula behind one row."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

TEMPLATE = Path(__file__).with_name("explorer.html")
MARKERS = re.compile("__ID__|__TITLE__|__DATA__")


def _packed(array: np.ndarray) -> str:
    """array's bytes, little-endian as the page reads them, in base64."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return base64.b64encode(little.tobytes()).decode()


# The formula view shows the first channels of each value vector (the output's too): the page
# holds only those, which keeps a 500-character page under 5 MB.
VALUE_CHANNELS = 8


def explorer_data(attention: dict, chars: Sequence[str], prompt_length: int) -> dict:
    """The page's data: scores as one float32 array (layer, head, t, s = start[t] .. t); per
    window, as float16 (layer, head, position, channel), the keys of its positions, the queries
    of the positions it is the window of (`first` .. end - 1: each query once) and the first
    VALUE_CHANNELS channels of the values; the rest as JSON."""
    scores = np.array(
        [s for layer in attention["scores"] for head in layer for row in head for s in row],
        dtype=np.float32,
    )
    starts = attention["start"]
    windows, offsets = [], {"queries": 0, "keys": 0, "values": 0}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in offsets}
    for window in attention["windows"]:
        first = starts.index(window["start"])  # its first query: earlier positions are context
        blocks = {
            "queries": np.array(window["queries"], dtype=np.float16)[
                :, :, first - window["start"] :
            ],
            "keys": np.array(window["keys"], dtype=np.float16),
            "values": np.array(window["values"], dtype=np.float16)[..., :VALUE_CHANNELS],
        }  # (layer, head, position, channel) each
        windows.append({"start": window["start"], "end": window["end"], "first": first,
                        **{f"{name}_offset": offsets[name] for name in offsets}})  # fmt: skip
        for name, block in blocks.items():
            vectors[name].append(block.ravel())
            offsets[name] += block.size
    return {
        "chars": list(chars),
        "ids": attention["ids"],
        "prompt_length": prompt_length,
        "start": starts,
        "n_layer": len(attention["scores"]),
        "n_head": len(attention["scores"][0]),
        "head_size": attention["head_size"],
        "value_channels": min(VALUE_CHANNELS, attention["head_size"]),
        "scores": _packed(scores),
        **{
            name: _packed(np.concatenate(blocks).view(np.uint16))
            for name, blocks in vectors.items()
        },
        "windows": windows,
        "top_ids": attention["top_ids"],
        "top_probs": [[round(p, 4) for p in row] for row in attention["top_probs"]],
    }


def explorer_fragment(attention: dict, chars: Sequence[str], prompt_length: int, title: str) -> str:
    """The explorer as one HTML element (style, data and script inside it), with an id of its
    own: a page's body, or a notebook's output beside others."""
    data = json.dumps(explorer_data(attention, chars, prompt_length), separators=(",", ":"))
    data = data.replace("</", "<\\/")  # nothing in the data can close its <script>
    fills = {"__ID__": f"explorer-{secrets.token_hex(6)}", "__TITLE__": escape(title),
             "__DATA__": data}  # fmt: skip
    # one pass: a title that holds a marker stays text
    return MARKERS.sub(lambda m: fills[m.group(0)], TEMPLATE.read_text(encoding="utf-8"))


def explorer_html(attention: dict, chars: Sequence[str], prompt_length: int, title: str) -> str:
    """The whole page, ready to write to a file."""
    fragment = explorer_fragment(attention, chars, prompt_length, title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Attention explorer: {escape(title)}</title>\n</head>\n<body>\n"
        f"{fragment}</body>\n</html>\n"
    )
