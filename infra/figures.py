"""Pictures for people: attention maps drawn with the characters on both axes, and characters
written so that newlines and spaces can be seen. matplotlib is imported only when a figure is
drawn (TensorBoard's add_figure takes its figures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VISIBLE = {"\n": "\\n", " ": "␣", "\t": "\\t"}


def visible(char: str) -> str:
    """A character as a label: newline as \\n, space as ␣, tab as \\t, the others as themselves."""
    return VISIBLE.get(char, char)


def attention_figure(maps: Sequence[torch.Tensor], chars: Sequence[str], title: str) -> Figure:
    """One row per layer and one panel per head: maps[layer] is (n_head, T, T), the weights each
    query (row, the character on the left) gives each key (column, the character below)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    from matplotlib.figure import Figure

    n_layers, n_heads, T = len(maps), maps[0].size(0), maps[0].size(-1)
    panel = max(2.5, 0.13 * T)  # inches: room for one label per character
    # Margins fixed by hand (inches): every label is one character, and a layout engine that
    # measures each of them would take most of the drawing time.
    left, right, bottom, top, gap = 0.7, 1.0, 0.6, 0.6, 0.45
    width = left + n_heads * panel + (n_heads - 1) * gap + right
    height = bottom + n_layers * panel + (n_layers - 1) * gap + top
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap / panel,
        hspace=gap / panel,
    )
    axes = fig.subplots(n_layers, n_heads, squeeze=False)
    labels = [visible(c) for c in chars]
    for layer, weights in enumerate(maps):
        for head in range(n_heads):
            ax = axes[layer][head]
            image = ax.imshow(weights[head].cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(T), labels, fontsize=6, family="monospace")
            ax.set_yticks(range(T), labels, fontsize=6, family="monospace")
            ax.tick_params(length=0, pad=1)
            ax.set_title(f"layer {layer}, head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel("query (predicting the next character)", fontsize=7)
            if layer == n_layers - 1:
                ax.set_xlabel("key (the earlier character it reads)", fontsize=7)
    colorbar_axes = fig.add_axes((1 - 0.8 / width, bottom / height, 0.15 / width, 0.5))
    fig.colorbar(image, cax=colorbar_axes, label="attention weight")
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / height, va="top")  # above the panels' titles
    return fig
