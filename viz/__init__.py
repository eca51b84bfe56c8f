"""Seeing attention from Python and in notebooks: `explore(model, tokenizer, "ROMEO:")` returns
the attention explorer, which Jupyter (and Colab) show inline, several on one page."""

from viz.explore import Explorer, explore

__all__ = ["Explorer", "explore"]
