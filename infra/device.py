"""Where and how the model runs: device, precision and distributed setup, decided once, here.

Under torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE) a process group is started: NCCL with
one GPU per local rank on CUDA, gloo on the CPU. Without torchrun nothing changes: one process,
rank 0.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from infra.errors import DeviceError, UserError

DEFAULT_DIST_TIMEOUT = 300.0  # seconds; torch's own default for gloo is 30 minutes
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = ("auto", *DTYPES)


def is_device_name(name: str) -> bool:
    """Whether name has the form of a device this project runs on (it may still be absent)."""
    prefix, colon, index = name.partition(":")
    if colon:
        return prefix == "cuda" and index.isdigit()
    return name in ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available here; "
                "use --device auto or --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    if device.type == "mps" and not _mps_available():
        raise DeviceError(
            "device 'mps' requested but MPS is not available here; use --device auto or cpu"
        )
    return device


# Overrides the probe below: "1" acts as if this CPU had native bf16, "0" as if it had not. For
# running the whole test suite (or a run) as it would go on the other kind of CPU.
NATIVE_BF16_ENV = "CHARGPT_NATIVE_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as torch reports it,
    unless CHARGPT_NATIVE_BF16 says otherwise. Elsewhere (most laptops, AVX2-only servers) bf16
    is emulated, many times slower than fp32."""
    forced = os.environ.get(NATIVE_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise DeviceError(f"{NATIVE_BF16_ENV} must be 0 or 1 (or unset), got {forced!r}")
        return forced == "1"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast precision for dtype `name` on device (see `explain_dtype` for auto's rule)."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    dtype = DTYPES[name]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("dtype bfloat16 requested but this GPU does not support it; use float16")
    if dtype == torch.float16 and device.type == "cpu":
        raise DeviceError("dtype float16 is for GPUs; on the CPU use bfloat16 or float32")
    return dtype


def inference_dtype(device: torch.device) -> torch.dtype:
    """The precision sampling and evaluation run in: fp32 on a CPU, so that a seed gives the same
    text on every CPU whatever its bf16 support; on a GPU what auto trains in (bf16, else fp16)."""
    return torch.float32 if device.type == "cpu" else resolve_dtype("auto", device)


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to inference_dtype on device (nothing in fp32)."""
    dtype = inference_dtype(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def explain_dtype(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """Why `name` became `dtype` here, for the start-up line. auto is bf16 autocast on CUDA that
    supports it (fp16 with a gradient scaler on older CUDA), bf16 on a CPU with native bf16,
    fp32 on other CPUs and on MPS."""
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        native = cpu_has_native_bf16()
        if name == "auto":
            if native:
                return f"auto: this CPU ({capability}) has native bf16"
            return f"auto: this CPU ({capability}) has no native bf16, which would be emulated"
        if dtype == torch.bfloat16 and not native:
            return (
                f"requested; warning: this CPU ({capability}) has no native bf16, so it is "
                "emulated and many times slower than float32: use --dtype auto"
            )
    return "auto" if name == "auto" else "requested"


# torch.compile took about 11 s to start and saved about 2.2 ms of an 11.4 ms step for
# shakespeare_char on an H200 (issue 27's measurements): it repays itself after ~5000 steps' work.
COMPILE_REPAID_AFTER = 5000


def decide_compile(setting: bool | None, device: torch.device, work: float) -> tuple[bool, str]:
    """Whether to compile the model, and why, for the start-up line. setting None is auto: on
    CUDA when `work` (the run's optimizer steps, an evaluation batch counted as a third of one:
    a forward pass without the backward) reaches COMPILE_REPAID_AFTER; never on the CPU or MPS,
    where compiling rarely repays its start-up (docs/performance.md)."""
    if setting is not None:
        return setting, "requested"
    if device.type != "cuda":
        return False, f"auto: eager on {device.type}, where compiling rarely repays its start-up"
    verdict = "repays" if work >= COMPILE_REPAID_AFTER else "is too short to repay"
    return work >= COMPILE_REPAID_AFTER, (
        f"auto: a run of ~{work:,.0f} steps {verdict} compiling (it pays from ~"
        f"{COMPILE_REPAID_AFTER:,})"
    )


def memory_bytes(device: torch.device) -> int | None:
    """The memory a model on device can use at most: the GPU's, or this machine's RAM (None
    where it cannot be known)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


def check_fits(needed: int, device: torch.device, what: str, error: type[UserError]) -> None:
    """A one-line error, before anything is allocated, when `what` needs more bytes than device
    has at all."""
    available = memory_bytes(device)
    if available is not None and needed > available:
        raise error(
            f"{what} needs {needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB "
            f"of {device.type} memory here"
        )


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast precision; float32 means no autocast
    rank: int = 0
    world_size: int = 1
    dtype_reason: str = ""  # why this precision, for the start-up line

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def synchronize(self) -> None:
        synchronize(self.device)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_runtime(
    device: str = "auto", dtype: str = "auto", timeout: float = DEFAULT_DIST_TIMEOUT
) -> Runtime:
    """Decide device and precision; under torchrun, join the process group, whose collectives
    give up after `timeout` seconds without an answer (a rank that hangs ends the job)."""
    if not launched_by_torchrun():
        resolved = resolve_device(device)
        precision = resolve_dtype(dtype, resolved)
        return Runtime(resolved, precision, dtype_reason=explain_dtype(dtype, resolved, precision))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ["WORLD_SIZE"])
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if device not in ("auto", "cuda"):
            raise DeviceError("under torchrun give --device cuda or auto: each rank takes its GPU")
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                "use --nproc_per_node at most that"
            )
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    elif resolved.type == "cpu":
        backend = "gloo"
    else:
        raise DeviceError(f"torchrun training runs on CUDA (NCCL) or CPU (gloo), not {resolved}")
    wait = datetime.timedelta(seconds=timeout)
    if backend == "nccl":
        dist.init_process_group(backend, device_id=resolved, timeout=wait)
    else:
        dist.init_process_group(backend, timeout=wait)
    precision = resolve_dtype(dtype, resolved)
    return Runtime(resolved, precision, rank, world_size, explain_dtype(dtype, resolved, precision))


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
