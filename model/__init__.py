"""The GPT model: `from model import GPT, GPTConfig`."""

from model.config import GPTConfig
from model.generate import generate, generate_tokens, sample_next_token
from model.gpt import GPT, evaluating
from model.kv_cache import KVCache

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "evaluating",
    "generate",
    "generate_tokens",
    "sample_next_token",
]
