"""The optimizer, built from the model and the config."""

from __future__ import annotations

import torch

from model import GPT
from training.config import TrainConfig


def build_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (linear weights, embeddings) only: decaying biases and
    LayerNorm gains towards zero only hurts (Loshchilov & Hutter 2019; GPT-2's practice).
    Fused into one kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied matrix appears once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        fused=device.type == "cuda" or None,
    )
