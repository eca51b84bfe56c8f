"""The trainer: the training state (model, optimizer, scaler, iteration, best loss, RNG) in one
object that saves and restores itself, and the loop that advances it."""

from __future__ import annotations

import contextlib
import hashlib
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from data import DataError, PreparedData, get_batch
from model import GPT, generate
from training.checkpoint import save_checkpoint
from training.config import ConfigError, TrainConfig
from training.logger import Console, Logger, NullLogger
from training.runtime import CoordinatedStop, Runtime
from training.schedule import get_lr

# Dense bf16/fp16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


class NonFiniteLoss(CoordinatedStop):
    """The loss became NaN or infinite; the last good checkpoint is kept. Every rank sees the same
    averaged loss, so every rank raises it at the same iteration."""


class TrainingInterrupted(CoordinatedStop):
    """SIGINT or SIGTERM arrived; last.pt was saved."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"{signal.Signals(signum).name} received; saved {checkpoint}")


def derived_seed(seed: int, *stream: object) -> int:
    """The seed of one independent random stream (e.g. "train" batches of rank 1) of a run."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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


def _peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    if device.type != "cuda" or dtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        runtime: Runtime,
        data: PreparedData,
        logger: Logger | None = None,
        console: Console | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.data = data
        self.logger = logger or NullLogger()
        self.console = console or Console(enabled=False)
        self.out_dir = Path(config.out_dir)
        device = runtime.device

        if config.gradient_accumulation_steps % runtime.world_size != 0:
            raise ConfigError(
                f"gradient_accumulation_steps ({config.gradient_accumulation_steps}) counts "
                "micro-batches over all processes: it must be a multiple of the "
                f"{runtime.world_size} processes"
            )
        self.accum_steps = config.gradient_accumulation_steps // runtime.world_size
        self.tokens_per_iter = (
            config.gradient_accumulation_steps * config.batch_size * config.block_size
        )
        for split, tokens in (("train", data.train), ("val", data.val)):
            if tokens.numel() <= config.block_size:
                raise DataError(
                    f"the {split} split has {tokens.numel()} tokens, too few for block_size "
                    f"{config.block_size}: use a longer text or a smaller block_size"
                )

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.raw_model = GPT(config.model_config(data.tokenizer.vocab_size)).to(device)
        self.eval_model = torch.compile(self.raw_model) if config.compile else self.raw_model
        self.model = self.eval_model
        if runtime.distributed:
            self.model = DDP(
                self.eval_model, device_ids=[device.index] if device.index is not None else None
            )
        self.optimizer = build_optimizer(self.raw_model, config, device)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.scaler = torch.amp.GradScaler(device.type, enabled=runtime.dtype == torch.float16)
        self.iter_num = 0
        self.best_val_loss = math.inf
        # dropout masks and batches differ between ranks
        torch.manual_seed(derived_seed(config.seed, "dropout", runtime.rank))
        self.batch_generator = torch.Generator().manual_seed(
            derived_seed(config.seed, "train", runtime.rank)
        )
        self.train_batches = self._draw_train_batches()
        self.resumed_at: int | None = None
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
            self.resumed_at = self.iter_num
        self.stop_signal: int | None = None
        self._clock_start = time.perf_counter()
        self._tokens_since_log = 0

    # ---- the step -------------------------------------------------------------------------------

    def _draw_train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.config
        while True:
            yield get_batch(
                self.data.train,
                cfg.batch_size,
                cfg.block_size,
                self.batch_generator,
                self.runtime.device,
            )

    def train_step(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over accum_steps micro-batches from batches. Returns the mean loss and
        the gradient norm before clipping, as tensors: reading them would wait for the GPU."""
        lr = get_lr(self.iter_num, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        mean_loss = torch.zeros((), device=self.runtime.device)
        for micro_step in range(self.accum_steps):
            x, y = next(batches)
            # Under DDP, gradients are all-reduced only in the last micro-step's backward.
            last = micro_step == self.accum_steps - 1
            no_sync = self.model.no_sync() if isinstance(self.model, DDP) and not last else None
            with no_sync or contextlib.nullcontext():
                with self.runtime.autocast():
                    _, loss = self.model(x, y)
                    loss = loss / self.accum_steps  # the step's loss is the mean over micro-batches
                self.scaler.scale(loss).backward()
            mean_loss += loss.detach()
        self.scaler.unscale_(self.optimizer)  # clip and report the true gradients, not scaled ones
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter_num += 1
        return mean_loss, grad_norm

    # ---- evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over eval_iters batches of each split, dropout off, averaged over ranks. The
        windows are the same at every evaluation (a fixed seed), so the curve shows the model
        changing, not the sample."""
        cfg = self.config
        self.raw_model.eval()
        losses = {}
        for split, tokens in (("train", self.data.train), ("val", self.data.val)):
            generator = torch.Generator().manual_seed(
                derived_seed(cfg.seed, "eval", split, self.runtime.rank)
            )
            total = torch.zeros((), device=self.runtime.device)
            for _ in range(cfg.eval_iters):
                x, y = get_batch(
                    tokens, cfg.batch_size, cfg.block_size, generator, self.runtime.device
                )
                with self.runtime.autocast():
                    _, loss = self.eval_model(x, y)
                total += loss.float()
            if self.runtime.distributed:
                dist.all_reduce(total)
            losses[split] = total.item() / (cfg.eval_iters * self.runtime.world_size)
        self.raw_model.train()
        return losses

    @torch.no_grad()
    def sample_text(self, n_chars: int) -> str:
        """A short sample from the current model, from a newline, with a fixed seed."""
        tokenizer = self.data.tokenizer
        start = tokenizer.encode("\n") if "\n" in tokenizer.stoi else [0]
        idx = torch.tensor([start], dtype=torch.long, device=self.runtime.device)
        generator = torch.Generator(device=self.runtime.device)
        generator.manual_seed(derived_seed(self.config.seed, "sample"))
        self.raw_model.eval()
        with self.runtime.autocast():
            out = generate(self.raw_model, idx, n_chars, generator=generator)
        self.raw_model.train()
        return tokenizer.decode(out[0, len(start) :].tolist())

    # ---- state ----------------------------------------------------------------------------------

    def _rng_state(self) -> dict[str, torch.Tensor | None]:
        device = self.runtime.device
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "mps": torch.mps.get_rng_state() if device.type == "mps" else None,
            "batches": self.batch_generator.get_state(),
        }

    def _set_rng_state(self, state: dict[str, torch.Tensor | None]) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and self.runtime.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.runtime.device)
        if state.get("mps") is not None and self.runtime.device.type == "mps":
            torch.mps.set_rng_state(state["mps"])
        self.batch_generator.set_state(state["batches"])

    def _all_rng_states(self) -> list[dict[str, torch.Tensor | None]]:
        """Every rank's RNG state, in rank order (a collective under DDP: all ranks call it)."""
        state = self._rng_state()
        if not self.runtime.distributed:
            return [state]
        states: list[Any] = [None] * self.runtime.world_size
        dist.all_gather_object(states, state)
        return states

    def state_dict(
        self, rng_states: list[dict[str, torch.Tensor | None]] | None = None
    ) -> dict[str, Any]:
        """Everything a run needs to continue exactly: primitives, tensors and state dicts only."""
        return {
            "model": self.raw_model.state_dict(),
            "model_args": asdict(self.raw_model.config),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iter_num": self.iter_num,
            "best_val_loss": self.best_val_loss,
            "config": self.config.to_dict(),
            "vocab": list(self.data.tokenizer.chars),
            "rng": rng_states if rng_states is not None else [self._rng_state()],
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint["vocab"] != self.data.tokenizer.chars:
            raise DataError(
                "the checkpoint was trained on a different vocabulary than this data "
                f"({len(checkpoint['vocab'])} vs {self.data.tokenizer.vocab_size} characters)"
            )
        self.raw_model.load_state_dict(checkpoint["model"])
        # keep this machine's kernel choice (fused, foreach), not the one the checkpoint was made on
        kernels = [{k: g[k] for k in ("fused", "foreach")} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for group, chosen in zip(self.optimizer.param_groups, kernels, strict=True):
            group.update(chosen)
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.iter_num = checkpoint["iter_num"]
        self.best_val_loss = checkpoint["best_val_loss"]
        rng_states = checkpoint["rng"]
        if len(rng_states) == self.runtime.world_size:
            self._set_rng_state(rng_states[self.runtime.rank])
        else:  # another world size: the batch streams cannot continue, so start new ones
            self.console.print(
                f"note: checkpoint made with {len(rng_states)} process(es), resumed with "
                f"{self.runtime.world_size}: batches are reseeded; the run goes on, not exactly"
            )
            self.batch_generator.manual_seed(
                derived_seed(self.config.seed, "train", self.runtime.rank, self.iter_num)
            )

    def save(self, best: bool = False) -> Path:
        """last.pt (and best.pt) in out_dir. Every rank must call it; rank 0 writes."""
        rng_states = self._all_rng_states()
        last = self.out_dir / "last.pt"
        if self.runtime.is_main:
            paths = [last, self.out_dir / "best.pt"] if best else [last]
            save_checkpoint(self.state_dict(rng_states), *paths)
        return last

    # ---- the loop -------------------------------------------------------------------------------

    def describe(self) -> None:
        cfg, rt = self.config, self.runtime

        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"

        self.console.print(
            f"device {rt.device}, autocast {str(rt.dtype).removeprefix('torch.')}, "
            f"{count(rt.world_size, 'process')}{', compiled' if cfg.compile else ''}"
        )
        self.console.print(f"model: {self.raw_model.num_params() / 1e6:.2f}M parameters")
        self.console.print(
            f"tokens per iteration: {count(self.accum_steps, 'micro-step')} x "
            f"{count(rt.world_size, 'process')} x {cfg.batch_size} batch x {cfg.block_size} "
            f"block = {self.tokens_per_iter:,}"
        )

    def _eval_due(self) -> bool:
        return (
            self.iter_num % self.config.eval_interval == 0 or self.iter_num == self.config.max_iters
        )

    def _restart_clock(self) -> None:
        self.runtime.synchronize()
        self._clock_start = time.perf_counter()
        self._tokens_since_log = 0

    def _evaluate_and_checkpoint(self) -> None:
        losses = self.estimate_loss()
        step = self.iter_num
        self.console.print(
            f"iter {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
        )
        if not all(math.isfinite(v) for v in losses.values()):
            raise NonFiniteLoss(f"evaluation at iteration {step} gave a non-finite loss")
        self.logger.scalar("loss/train", losses["train"], step)
        self.logger.scalar("loss/val", losses["val"], step)
        if self.config.sample_chars and self.runtime.is_main:
            self.logger.text("sample", self.sample_text(self.config.sample_chars), step)
        improved = losses["val"] < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, losses["val"])
        self.save(best=improved)
        self.logger.flush()
        self._restart_clock()

    def _report(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """Log the step at a log point; returns whether every rank should stop now. Under DDP the
        ranks agree here, in one small all-reduce, so that no rank is left waiting for another."""
        stats = torch.stack(
            [
                loss.float(),
                grad_norm.float(),
                torch.tensor(float(self.stop_signal is not None), device=loss.device),
            ]
        )
        if self.runtime.distributed:
            dist.all_reduce(stats)
            stats[:2] /= self.runtime.world_size
        loss_value, grad_norm_value, stop_votes = stats.tolist()  # waits for the GPU
        elapsed = time.perf_counter() - self._clock_start
        tokens_per_sec = self._tokens_since_log / elapsed
        step = self.iter_num
        grads_must_be_finite = not self.scaler.is_enabled()  # fp16 skips steps with inf gradients
        if not math.isfinite(loss_value) or (
            grads_must_be_finite and not math.isfinite(grad_norm_value)
        ):
            raise NonFiniteLoss(
                f"loss {loss_value}, gradient norm {grad_norm_value} at iteration {step}"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self.logger.scalar("loss/train_step", loss_value, step)
        self.logger.scalar("lr", lr, step)
        self.logger.scalar("grad_norm", grad_norm_value, step)
        self.logger.scalar("tokens_per_sec", tokens_per_sec, step)
        peak = _peak_flops(self.runtime.device, self.runtime.dtype)
        mfu = (
            self.raw_model.flops_per_token(self.config.block_size) * tokens_per_sec / peak
            if peak
            else None
        )
        if mfu is not None:
            self.logger.scalar("mfu", mfu, step)
        mfu_text = f", mfu {100 * mfu:.1f}%" if mfu is not None else ""
        progress = f"loss {loss_value:.4f}, lr {lr:.2e}, {tokens_per_sec:,.0f} tok/s{mfu_text}"
        if self.console.bar is not None:
            self.console.update_bar(0, postfix=progress)
        else:
            self.console.print(f"iter {step}: {progress}")
        self._restart_clock()
        return stop_votes > 0

    def fit(self) -> None:
        """Train until max_iters: evaluate and checkpoint every eval_interval iterations, log every
        log_interval. SIGINT/SIGTERM save last.pt and raise TrainingInterrupted."""
        cfg = self.config
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.console.start_bar(total=cfg.max_iters, initial=self.iter_num)
        try:
            self._restart_clock()
            while True:
                if self._eval_due() and self.iter_num != self.resumed_at:
                    self._evaluate_and_checkpoint()
                if self.iter_num >= cfg.max_iters:
                    break
                loss, grad_norm = self.train_step(self.train_batches)
                self._tokens_since_log += self.tokens_per_iter
                self.console.update_bar(1)
                if self.iter_num % cfg.log_interval == 0 or self.iter_num == cfg.max_iters:
                    stop = self._report(loss, grad_norm)
                    if stop and self.iter_num < cfg.max_iters:
                        self._stop()
        finally:
            self.console.close_bar()
            self.logger.flush()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self.stop_signal = signum
        self.console.print(
            f"{signal.Signals(signum).name}: saving a checkpoint at the next log point "
            "(interrupt again to quit without saving)"
        )

    def _stop(self) -> None:
        if self._eval_due():
            self._evaluate_and_checkpoint()  # saves last.pt too
        else:
            self.save()
        raise TrainingInterrupted(self.stop_signal or signal.SIGTERM, self.out_dir / "last.pt")
