"""Model FLOPs utilisation: the fraction of a GPU's peak the model's FLOPs reach."""

from __future__ import annotations

import torch

# Dense bf16/fp16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The GPU's peak FLOP/s at dtype, where known (for MFU); None on CPUs and unknown GPUs."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)
