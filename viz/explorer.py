"""The attention explorer (docs/attention.md): one self-contained HTML fragment (data, script and
style inline, no network) over a text and what a model's heads attend to in it; the page
(viz/explorer.html) makes the weights from the scores with the model's softmax and shows them."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
import torch

from model.attention_maps import attention_inputs
from model.generate import window_start
from model.gpt import GPT, evaluating

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
    scores = [s for layer in attention["scores"] for head in layer for row in head for s in row]
    windows, offsets = [], {"queries": 0, "keys": 0, "values": 0}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in offsets}
    for window in attention["windows"]:
        start, first = window["start"], window["first"]  # positions before first are context
        blocks = {
            "queries": window["queries"][:, :, first - start :],
            "keys": window["keys"],
            "values": window["values"][..., :VALUE_CHANNELS],
        }  # (layer, head, position, channel) each
        windows.append({"start": start, "end": window["end"], "first": first,
                        **{f"{name}_offset": offsets[name] for name in offsets}})  # fmt: skip
        for name, block in blocks.items():
            vectors[name].append(block.astype(np.float16).ravel())
            offsets[name] += block.size
    return {
        "chars": list(chars),
        "ids": attention["ids"],
        "prompt_length": prompt_length,
        "start": attention["start"],
        "n_layer": len(attention["scores"]),
        "n_head": len(attention["scores"][0]),
        "head_size": attention["head_size"],
        "value_channels": min(VALUE_CHANNELS, attention["head_size"]),
        "scores": _packed(np.array(scores, dtype=np.float32)),
        **{name: _packed(np.concatenate(b).view(np.uint16)) for name, b in vectors.items()},
        "windows": windows,
        "top_ids": attention["top_ids"],
        "top_probs": [[round(p, 4) for p in row] for row in attention["top_probs"]],
        # with rotary positions the page says that q and k are shown after their rotation
        "rotary": bool(attention.get("rotary", False)),
        "block_size": attention.get("block_size"),
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


@torch.no_grad()
def attention_over_text(model: GPT, ids: list[int], top: int = 5) -> dict:
    """Everything the explorer shows for a text of any length, from one forward pass per context
    window of generation (window_start) and each layer's `CausalSelfAttention.project`.

    For each position t (a query), `start[t]` is the first position of its window. In layer l,
    head h, its row of `scores` holds q_t·k_s (before the 1/√d_k) for keys s = start[t] .. t.
    `windows` holds each window's `start`, `end` and `first` query, and the queries, keys and
    values of its positions as arrays (layer, head, position, hs). `top_ids` and `top_probs` are
    the likeliest next characters after t; `rotary` says whether q and k are rotated
    (pos_embedding "rope"), and `block_size` is the longest window."""
    T, block = len(ids), model.config.block_size
    starts, start = [], None
    for length in range(1, T + 1):
        start = window_start(length, start, block)
        starts.append(start)
    n_layer, n_head = model.config.n_layer, model.config.n_head
    scores = [[[] for _ in range(n_head)] for _ in range(n_layer)]  # (layer, head, t, s)
    windows, top_ids, top_probs = [], [], []
    device = next(model.parameters()).device
    for window in sorted(set(starts)):  # in order: each window's queries follow the last's
        first = starts.index(window)
        end = first + starts.count(window)  # its queries are first .. end - 1
        rows = range(first - window, end - window)  # and their rows in the window
        idx = torch.tensor([ids[window:end]], device=device)
        layers = attention_inputs(model, idx)  # (q, k, v) per layer, (1, nh, T_window, hs) each
        with evaluating(model):
            logits, _ = model(idx)
        probs = torch.softmax(logits[0, first - window :].float(), dim=-1)  # (queries, vocab)
        best = probs.topk(min(top, probs.size(-1)), dim=-1)
        top_ids += best.indices.tolist()
        top_probs += best.values.tolist()
        vectors = [torch.cat(x).float().cpu().numpy() for x in zip(*layers, strict=True)]
        vectors = dict(zip(("queries", "keys", "values"), vectors, strict=True))
        windows.append({"start": window, "end": end, "first": first, **vectors})
        for layer, (q, k, _) in enumerate(layers):
            s = (q @ k.transpose(-2, -1))[0].float().tolist()  # (nh, T_window, T_window)
            for head in range(n_head):
                scores[layer][head] += [s[head][r][: r + 1] for r in rows]
    return {
        "ids": list(ids),
        "start": starts,
        "head_size": model.config.n_embd // n_head,
        "scores": scores,
        "windows": windows,
        "top_ids": top_ids,
        "top_probs": top_probs,
        "rotary": model.config.pos_embedding == "rope",
        "block_size": block,
    }
