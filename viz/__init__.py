"""Seeing inside the model and its training from Python and notebooks: `explore(model, tokenizer,
"ROMEO:")` returns the attention explorer, which Jupyter (and Colab) show inline, several on one
page; `LivePlot()` is a hook for train() that draws its curves as it goes."""

from viz.explore import Explorer, explore
from viz.live_plot import LivePlot

__all__ = ["Explorer", "LivePlot", "explore"]
