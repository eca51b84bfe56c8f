"""Pictures for people: attention maps with the characters on both axes, and characters written
so that newlines and spaces can be seen. matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from data import CharTokenizer


def visible(char: str) -> str:
    """A character as a one-glyph label, as the explorer's zoom writes it: newline as ↵, space as
    ␣ (and tab as →), the others as themselves."""
    return {"\n": "↵", " ": "␣", "\t": "→"}.get(char, char)


FUTURE_PINK = "#f4c7c3"  # the masked future, as the explorer draws it


def causal_view(weights: torch.Tensor) -> np.ma.MaskedArray:
    """A (T, T) map of weights to draw, with the future (key after query, which the causal mask
    forbids) masked: drawn in FUTURE_PINK, apart from a weight of 0 a query could have given."""
    values = weights.float().cpu().numpy()
    future = np.triu(np.ones(values.shape, dtype=bool), k=1)
    return np.ma.masked_array(values, mask=future)


def attention_figure(
    maps: Sequence[torch.Tensor],
    chars: Sequence[str],
    title: str,
    first_layer: int = 0,
    heads_down: bool = False,
) -> Figure:
    """One row per layer and one panel per head (with heads_down, one row per head and a column
    per layer: narrow enough for TensorBoard's card): maps[i] is (n_head, T, T), the weights each
    query (row, the character on the left) gives each key (column, the character below), of the
    layer numbered first_layer + i in the panels' titles. The future, which the causal mask
    hides from each query, is pink."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    from matplotlib.figure import Figure

    n_layers, n_heads, T = len(maps), maps[0].size(0), maps[0].size(-1)
    rows, columns = (n_heads, n_layers) if heads_down else (n_layers, n_heads)
    panel = max(2.5, 0.15 * T)  # inches: room for one 8-point label per character
    # Margins fixed by hand (inches): every label is one character, and a layout engine that
    # measures each of them would take most of the drawing time.
    left, right, bottom, top, gap = 0.7, 1.0, 0.6, 0.6, 0.45
    width = left + columns * panel + (columns - 1) * gap + right
    height = bottom + rows * panel + (rows - 1) * gap + top
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, wspace=gap / panel)
    fig.subplots_adjust(bottom=bottom / height, top=1 - top / height, hspace=gap / panel)
    axes = fig.subplots(rows, columns, squeeze=False)
    labels = [visible(c) for c in chars]
    # the future in the explorer's pink (viz/explorer.html), apart from viridis's weights
    colours = matplotlib.colormaps["viridis"].with_extremes(bad=FUTURE_PINK)
    for layer, weights in enumerate(maps):
        for head in range(n_heads):
            row, column = (head, layer) if heads_down else (layer, head)
            ax = axes[row][column]
            image = ax.imshow(causal_view(weights[head]), cmap=colours, vmin=0.0, vmax=1.0)
            ax.set_xticks(range(T), labels, fontsize=8, family="monospace")
            ax.set_yticks(range(T), labels, fontsize=8, family="monospace")
            ax.tick_params(length=0, pad=1)
            ax.set_title(f"layer {first_layer + layer}, head {head}", fontsize=8)
            if column == 0:
                ax.set_ylabel("query (predicting the next character)", fontsize=7)
            if row == rows - 1:
                ax.set_xlabel("key (the character it reads, at or before the query)", fontsize=7)
    colorbar_axes = fig.add_axes((1 - 0.8 / width, bottom / height, 0.15 / width, 0.5))
    fig.colorbar(image, cax=colorbar_axes, label="attention weight")
    fig.text(1 - 0.9 / width, 0.5 * bottom / height, "pink: the\nfuture, masked", fontsize=7,
             va="center", bbox={"facecolor": FUTURE_PINK, "edgecolor": "none"})  # fmt: skip
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / height, va="top")  # above the panels' titles
    return fig


class AttentionPictures:
    """One layer's attention maps over a fixed probe text (token `ids` of `tokenizer`) as a picture
    for TensorBoard at every evaluation. Each layer's figure is laid out and drawn once; later ones
    draw only the new weights and title over it (matplotlib's blitting): milliseconds, not a second
    on the hundreds of labels, and the pixels of a figure drawn afresh (tests/test_views.py)."""

    def __init__(self, ids: Sequence[int], tokenizer: CharTokenizer) -> None:
        self.ids, self.tokenizer = list(ids), tokenizer
        self.chars = [tokenizer.chars[i] for i in ids]
        self.layers: dict[int, tuple] = {}

    def draw(self, layer: int, maps: torch.Tensor, title: str) -> np.ndarray:
        """The picture of maps (n_head, T, T), the weights of `layer`: (height, width, 3) uint8."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if layer not in self.layers:
            figure = attention_figure([maps], self.chars, title, layer, heads_down=True)
            canvas = FigureCanvasAgg(figure)
            images = [ax.images[0] for ax in figure.axes if ax.images][: maps.size(0)]
            # the frames lie over the pictures' edges, so they are drawn after them
            changing = [figure._suptitle, *images]
            changing += [spine for image in images for spine in image.axes.spines.values()]
            for artist in changing:  # the saved drawing holds everything that stays
                artist.set_visible(False)
            canvas.draw()
            background = canvas.copy_from_bbox(figure.bbox)
            for artist in changing:
                artist.set_visible(True)
            self.layers[layer] = (figure, canvas, background, images)
        figure, canvas, background, images = self.layers[layer]
        canvas.restore_region(background)
        for image, weights in zip(images, maps, strict=True):
            image.set_data(causal_view(weights))
            image.axes.draw_artist(image)
            for spine in image.axes.spines.values():
                image.axes.draw_artist(spine)
        figure._suptitle.set_text(title)
        figure.draw_artist(figure._suptitle)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
