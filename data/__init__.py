"""Data: the character tokenizer, finding and preparing the corpus, and batching."""

from data.batching import get_batch
from data.corpus import DATASETS, PreparedData, load_dataset
from data.tokenizer import CharTokenizer

__all__ = ["DATASETS", "CharTokenizer", "PreparedData", "get_batch", "load_dataset"]
