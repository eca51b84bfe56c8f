"""The optimizers, built from the model and the config, and the learning-rate schedule."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import Tensor

from infra.device import cpu_has_native_bf16
from model import GPT
from training.config import TrainConfig


def build_optimizers(
    model: GPT, config: TrainConfig, device: torch.device
) -> list[torch.optim.Optimizer]:
    """config.optimizer "adamw": one AdamW over every parameter. "muon": Muon over the 2-D weight
    matrices inside the blocks (attention and MLP), AdamW over the rest (the embedding, which is
    also the output head, and the LayerNorm gains and biases). Each parameter is in exactly one."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied matrix appears once
    if config.optimizer == "adamw":
        return [adamw(params, config, device)]
    matrices = block_matrices(model)
    in_muon = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in in_muon]
    return [adamw(rest, config, device), muon(matrices, config, device)]


def block_matrices(model: GPT) -> list[Tensor]:
    """Muon's share: the trainable 2-D weight matrices inside the blocks (attention and MLP)."""
    return [p for p in model.transformer.h.parameters() if p.dim() == 2 and p.requires_grad]


def adamw(params: list[Tensor], config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (linear weights, embeddings) only: decaying biases and
    LayerNorm gains towards zero only hurts (Loshchilov & Hutter 2019; GPT-2's practice).
    Fused into one kernel on CUDA."""
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


def muon(params: list[Tensor], config: TrainConfig, device: torch.device) -> torch.optim.Muon:
    """torch.optim.Muon where bf16 matrix products are native (CUDA, CPUs with AVX512-BF16 or
    AMX); elsewhere MuonFP32, the same update computed in fp32, because torch's Newton-Schulz
    iteration runs in bf16, which such CPUs emulate many times slower than fp32."""
    native_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    kind = torch.optim.Muon if native_bf16 else MuonFP32
    return kind(
        params,
        lr=config.learning_rate * config.muon_lr_ratio,
        momentum=config.muon_momentum,
        weight_decay=config.weight_decay,
    )


def lr_multiplier(it: int, config: TrainConfig) -> float:
    """The schedule's factor for optimizer step `it` (0-based), on each optimizer's own peak rate,
    so AdamW and Muon warm up and decay together.

    Warm-up rises linearly to 1 over warmup_iters steps, starting at 1 / (warmup_iters + 1), never
    0: a step at rate 0 would be wasted. After warm-up:
    - constant: 1.
    - linear:   straight down to the floor at lr_decay_iters.
    - cosine:   half a cosine down to the floor at lr_decay_iters (Loshchilov & Hutter 2017).
    - wsd:      warm-up, stable at 1, then a linear cool-down over the last cooldown_frac of
                lr_decay_iters (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
                Beyond Fixed Training Durations").
    After lr_decay_iters every schedule but constant stays at the floor, min_lr_ratio.
    """
    warmup, end, floor = config.warmup_iters, config.decay_end, config.min_lr_ratio
    if it < warmup:
        return (it + 1) / (warmup + 1)
    if config.lr_schedule == "constant":
        return 1.0
    if it >= end:
        return floor
    start = warmup  # where the decay starts
    if config.lr_schedule == "wsd":
        start = max(warmup, end - round(config.cooldown_frac * end))
        if it < start:
            return 1.0
    progress = (it - start) / (end - start)  # 0 -> 1 over the decay
    if config.lr_schedule == "cosine":
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - floor)
    return 1.0 - progress * (1.0 - floor)  # linear, and wsd's cool-down


def describe_optimizers(optimizers: list[torch.optim.Optimizer]) -> str:
    """For the start-up line, e.g. 'AdamW (10 tensors) + Muon (16 matrices)'."""
    parts = []
    for optimizer in optimizers:
        n = sum(len(group["params"]) for group in optimizer.param_groups)
        if isinstance(optimizer, MuonFP32):
            parts.append(f"Muon ({n} matrices; in fp32: this CPU has no native bf16)")
        elif isinstance(optimizer, torch.optim.Muon):
            parts.append(f"Muon ({n} matrices)")
        else:
            parts.append(f"{type(optimizer).__name__} ({n} tensors)")
    return " + ".join(parts)


def orthogonalize(
    matrices: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> Tensor:
    """The Newton-Schulz iteration of Muon, in fp32, on a stack of matrices (k, m, n) at once.

    Each matrix G is scaled to Frobenius norm 1 (so its spectral norm is at most 1), then each step
    maps X to PX with P = aI + bXXᵀ + c(XXᵀ)², a quintic that pushes every singular value towards
    about 1 (into roughly 0.5 to 1.5 after 5 steps) while keeping the singular vectors: close to
    UVᵀ for G = USVᵀ. Tall matrices are transposed first, so that XXᵀ is the smaller Gram matrix.

    The steps run on the Gram matrix A = XXᵀ alone: P is a polynomial in A, so the next A is PAP
    and X after all steps is (P_k ... P_1) X. That touches the (m, n) matrix twice instead of twice
    a step: for the blocks' 4:1 MLP matrices, 25m³ multiply-adds against the textbook's 45m³ (44%
    fewer), the same result to fp32 rounding.
    """
    a, b, c = coefficients
    x = matrices.float()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    gram = x @ x.mT  # (k, m, m)
    product = None  # P_k ... P_1
    for step in range(steps):
        p = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        p.diagonal(dim1=-2, dim2=-1).add_(a)  # + a·I
        product = p if product is None else p @ product
        if step < steps - 1:  # the last step's P needs no next A
            gram = p @ gram @ p
    x = product @ x if product is not None else x
    return x.mT if tall else x


class MuonFP32(torch.optim.Muon):
    """torch.optim.Muon (its defaults, checks, rate adjustment and state_dict: a run may move from
    one to the other), with the Newton-Schulz iteration in fp32, batched over the matrices of one
    shape; its update equals torch's to bf16 precision (tests/test_optim.py holds it there)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            same_shape: dict[torch.Size, list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    same_shape[p.shape].append(p)
            for shape, params in same_shape.items():
                updates = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buffer = state["momentum_buffer"]
                    buffer.lerp_(p.grad, 1 - momentum)
                    updates.append(p.grad.lerp(buffer, momentum) if group["nesterov"] else buffer)
                ortho = orthogonalize(
                    torch.stack(updates), group["ns_coefficients"], group["ns_steps"], group["eps"]
                )
                # torch.optim.Muon's own rate for the shape (by default lr·sqrt(max(1, out/in)))
                scaled_lr = lr * rms_adjustment(group["adjust_lr_fn"], shape)
                for p, update in zip(params, ortho, strict=True):
                    p.mul_(1 - lr * decay)
                    p.add_(update, alpha=-scaled_lr)
        return loss


def rms_adjustment(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The factor on Muon's rate for a matrix of this (out, in) shape, as torch.optim.Muon
    documents it: "original" (the default) sqrt(max(1, out/in)), "match_rms_adamw"
    0.2·sqrt(max(out, in))."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * max(rows, cols) ** 0.5
    return max(1.0, rows / cols) ** 0.5
