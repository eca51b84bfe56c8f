"""Where and how the model runs: device, precision, compiling and distributed setup (a process
group under torchrun, NCCL on CUDA and gloo on the CPU; else one process, rank 0), decided once."""

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
    return name in ("auto", "cpu", "cuda", "mps") or (name[:5] == "cuda:" and name[5:].isdigit())


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an explicit device must exist."""
    mps = torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available here; "
                              "use --device auto or --device cpu")  # fmt: skip
        if device.index is not None and device.index >= (count := torch.cuda.device_count()):
            raise DeviceError(f"device {name!r} requested but only {count} GPU(s) exist")
    if device.type == "mps" and not mps:
        raise DeviceError("device 'mps' requested but MPS is not available here; "
                          "use --device auto or cpu")  # fmt: skip
    return device


# Overrides the probe below: "1" acts as if this CPU had native bf16, "0" as if it had not. For
# running the whole test suite (or a run) as it would go on the other kind of CPU.
NATIVE_BF16_ENV = "CHARGPT_NATIVE_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), unless NATIVE_BF16_ENV
    says; elsewhere (most laptops, AVX2-only servers) bf16 is emulated, many times slower."""
    forced = os.environ.get(NATIVE_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise DeviceError(f"{NATIVE_BF16_ENV} must be 0 or 1 (or unset), got {forced!r}")
        return forced == "1"
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast precision for dtype `name` on device."""
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


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """The precision sampling and evaluation run in: fp32 (no autocast) on a CPU, so that a seed
    gives the same text on every CPU whatever its bf16 support; on a GPU what auto trains in."""
    dtype = torch.float32 if device.type == "cpu" else resolve_dtype("auto", device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def explain_dtype(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """Why `name` became `dtype` here, for the start-up line (auto's rule: `resolve_dtype`, and
    docs/internals.md, "Precision")."""
    if device.type == "cpu":
        cpu, native = f"this CPU ({torch.backends.cpu.get_cpu_capability()})", cpu_has_native_bf16()
        if name == "auto":
            has = "native bf16" if native else "no native bf16, which would be emulated"
            return f"auto: {cpu} has {has}"
        if dtype == torch.bfloat16 and not native:
            return (f"requested; warning: {cpu} has no native bf16, so it is emulated and many "
                    "times slower than float32: use --dtype auto")  # fmt: skip
    return "auto" if name == "auto" else "requested"


# torch.compile took about 11 s to start and saved about 2.2 ms of an 11.4 ms step for
# shakespeare_char on an H200 (issue 27's measurements): it repays itself after ~5000 steps' work.
COMPILE_REPAID_AFTER = 5000


def decide_compile(setting: bool | None, device: torch.device, work: float) -> tuple[bool, str]:
    """Whether to compile the model, and why, for the start-up line. None is auto: on CUDA when
    `work` (optimizer steps, an evaluation batch a third of one: no backward) reaches
    COMPILE_REPAID_AFTER; never on the CPU or MPS, where it rarely repays (docs/performance.md)."""
    if setting is not None:
        return setting, "requested"
    if device.type != "cuda":
        return False, f"auto: eager on {device.type}, where compiling rarely repays its start-up"
    verdict = "repays" if work >= COMPILE_REPAID_AFTER else "is too short to repay"
    reason = f"auto: a run of ~{work:,.0f} steps {verdict} compiling"
    return work >= COMPILE_REPAID_AFTER, f"{reason} (it pays from ~{COMPILE_REPAID_AFTER:,})"


def check_fits(needed: int, device: torch.device, what: str, error: type[UserError]) -> None:
    """A one-line error, before anything is allocated, when `what` needs more bytes than device
    has at all: the GPU's memory, or this machine's RAM (unchecked where that is unknown)."""
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[1]
    else:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not POSIX
            return
    if needed > available:
        raise error(f"{what} needs {needed / 2**30:,.1f} GiB, more than the "
                    f"{available / 2**30:,.1f} GiB of {device.type} memory here")  # fmt: skip


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
        """Wait for queued GPU work, so a clock read afterwards measures it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_runtime(
    device: str = "auto", dtype: str = "auto", timeout: float = DEFAULT_DIST_TIMEOUT, join=True
) -> Runtime:
    """Decide device and precision. Under torchrun each process takes its local rank's GPU and,
    with join, joins the process group, whose collectives give up after `timeout` seconds
    without an answer (a rank that hangs ends the job); without join it trains alone (a sweep's
    processes share out its variants)."""
    resolved, rank, world_size = resolve_device(device), 0, 1
    if launched_by_torchrun():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if resolved.type not in ("cuda", "cpu"):
            raise DeviceError(
                f"torchrun training runs on CUDA (NCCL) or CPU (gloo), not {resolved}"
            )
        if resolved.type == "cuda":
            if device not in ("auto", "cuda"):
                raise DeviceError(
                    "under torchrun give --device cuda or auto: each rank takes its GPU"
                )
            if local_rank >= (count := torch.cuda.device_count()):
                raise DeviceError(f"local rank {local_rank} has no GPU: this node has {count}; "
                                  "use --nproc_per_node at most that")  # fmt: skip
            resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)
        if join:
            rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            cuda, wait = resolved.type == "cuda", datetime.timedelta(seconds=timeout)
            dist.init_process_group(
                "nccl" if cuda else "gloo", device_id=resolved if cuda else None, timeout=wait
            )
    precision = resolve_dtype(dtype, resolved)
    return Runtime(resolved, precision, rank, world_size, explain_dtype(dtype, resolved, precision))


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
