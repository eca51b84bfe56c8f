"""Model FLOPs utilisation (MFU): a training step's FLOPs, over the GPU's peak FLOP/s."""

from __future__ import annotations

import torch

from model import GPT

# Dense bf16/fp16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def flops_per_token(model: GPT, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token at context length seq_len: 6 per parameter
    (2 forward, 4 backward) plus attention's QKᵀ and AV products, 6N + 12 · n_layer · n_embd ·
    seq_len (Kaplan et al. 2020; PaLM appendix B)."""
    cfg = model.config
    return 6 * model.num_params() + 12 * cfg.n_layer * cfg.n_embd * seq_len


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The GPU's peak FLOP/s at dtype, where known (for MFU); None on CPUs and unknown GPUs."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)
