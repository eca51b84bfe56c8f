"""The trainer: a run's state in one object that saves and restores itself, the step that advances
it, and the clock that times it. The loop that calls it is train.py's."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from checkpoint import BEST, LAST, cpu_copy, load_weights, new_checkpoint, save_checkpoint
from data import PreparedData, get_batch
from infra.background import Background
from infra.device import Runtime, check_fits, decide_compile
from infra.errors import ConfigError, DataError
from model import GPT
from model.config import parameter_count
from training.config import TrainConfig
from training.console import Console
from training.distributed import all_rng_states
from training.optim import build_optimizers, lr_multiplier
from training.rng import RandomStreams, RngState, derived_seed, global_generators, global_state


class Trainer:
    """Built whole from what a run has decided; `on_first_checkpoint` runs once its first
    checkpoint is on disk (to give up the run an --overwrite set aside)."""

    def __init__(
        self,
        config: TrainConfig,
        runtime: Runtime,
        data: PreparedData,
        console: Console | None = None,
        checkpoint: dict[str, Any] | None = None,
        on_first_checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.config, self.runtime, self.data = config, runtime, data
        self.console = console or Console(enabled=False)
        self.out_dir = Path(config.out_dir)
        self.on_first_checkpoint = on_first_checkpoint
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

        # model: the GPT whose weights are trained and saved. compiled_model: the same, through
        # torch.compile when asked; evaluations run it. train_model: what the training step runs,
        # compiled_model wrapped in DDP under torchrun (DDP all-reduces its gradients).
        model_config = config.model_config(data.tokenizer.vocab_size)
        # weights, gradients and AdamW's two moments: 16 bytes a parameter, activations aside
        check_fits(
            16 * parameter_count(model_config), device,
            f"training {parameter_count(model_config):,} parameters (n_layer {config.n_layer}, "
            f"n_embd {config.n_embd})", ConfigError,
        )  # fmt: skip
        with global_generators(global_state(device, config.seed), device):  # the same on every rank
            self.model = GPT(model_config).to(device)
        self.compiled, self.compile_reason = decide_compile(
            config.compile, device, run_work(config, checkpoint["iter_num"] if checkpoint else 0)
        )
        self.compiled_model = torch.compile(self.model) if self.compiled else self.model
        self.train_model = self.compiled_model
        if runtime.distributed:
            device_ids = [device.index] if device.index is not None else None
            self.train_model = DDP(self.compiled_model, device_ids=device_ids)
        self.optimizers = build_optimizers(self.model, config, device)
        self.params = [
            p for o in self.optimizers for group in o.param_groups for p in group["params"]
        ]
        self.scaler = torch.amp.GradScaler(device.type, enabled=runtime.dtype == torch.float16)
        self.iter_num = 0
        self.best_val_loss = math.inf
        self.extras_seconds = 0.0  # the sample's and the views' time, both threads (evaluation.py)
        self.said_extras_wait = False
        self.eval_losses: dict[str, float] = {}  # the latest evaluation, with its iteration
        # checkpoints written and pictures drawn beside the training loop (infra/background.py)
        self.background = Background()
        self.streams = RandomStreams(config.seed, runtime.rank, device)  # batches, dropout
        self.train_batches = self._draw_train_batches()
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        self.clock = Clock(runtime.synchronize, self.iter_num)

    # ---- the step -------------------------------------------------------------------------------

    def _draw_train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg, device = self.config, self.runtime.device
        while True:
            yield get_batch(
                self.data.train, cfg.batch_size, cfg.block_size, self.streams.batches, device
            )

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over accum_steps micro-batches of train_batches: the mean loss and
        the gradient norm before clipping, as tensors (reading them would wait for the GPU)."""
        self.begin_step()
        mean_loss = torch.zeros((), device=self.runtime.device)
        with self.streams.dropout():
            for micro_step in range(self.accum_steps):
                x, y = next(self.train_batches)
                # Under DDP, gradients are all-reduced only in the last micro-step's backward.
                defer = isinstance(self.train_model, DDP) and micro_step < self.accum_steps - 1
                with self.train_model.no_sync() if defer else contextlib.nullcontext():
                    with self.runtime.autocast():
                        _, loss = self.train_model(x, y)
                        loss = loss / self.accum_steps  # the step's loss: the micro-batches' mean
                    self.scaler.scale(loss).backward()
                mean_loss += loss.detach()
        return self.end_step(mean_loss)

    def begin_step(self) -> None:
        """This step's learning rate, each optimizer at its own peak rate times the schedule's
        factor, and the gradients cleared (here rather than after the step, so that an
        evaluation between steps can still show the last update's gradients)."""
        multiplier = lr_multiplier(self.iter_num, self.config)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = optimizer.defaults["lr"] * multiplier
            optimizer.zero_grad(set_to_none=True)

    def end_step(self, mean_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip the true (unscaled) gradients and step every optimizer."""
        for optimizer in self.optimizers:
            self.scaler.unscale_(optimizer)
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
        for optimizer in self.optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()
        self.iter_num += 1
        self.clock.tokens += self.tokens_per_iter
        return mean_loss, grad_norm

    def due(self, interval: int) -> bool:
        """Whether this iteration is one of every `interval` (the last one always is)."""
        return self.iter_num % interval == 0 or self.iter_num == self.config.max_iters

    def record_evaluation(self, losses: dict[str, float], checkpointed: bool) -> bool:
        """Keep an evaluation's losses (saved with the checkpoint); whether its val loss is the best
        of those checkpointed (never iteration 0's: the untrained model's)."""
        self.eval_losses = {"iter": self.iter_num, **losses}
        if not checkpointed or self.iter_num == 0 or losses["val"] >= self.best_val_loss:
            return False
        self.best_val_loss = losses["val"]
        return True

    # ---- state ----------------------------------------------------------------------------------

    def state_dict(self, rng_states: list[RngState] | None = None) -> dict[str, Any]:
        """Everything a run needs to continue exactly: primitives, tensors and state dicts only."""
        return new_checkpoint(
            model=self.model.state_dict(),
            model_args=asdict(self.model.config),
            optimizer=[optimizer.state_dict() for optimizer in self.optimizers],
            scaler=self.scaler.state_dict(),
            iter_num=self.iter_num,
            best_val_loss=self.best_val_loss,
            eval_losses=self.eval_losses,
            config=self.config.to_dict(),
            vocab=list(self.data.tokenizer.chars),
            rng=rng_states or [self.streams.state_dict()],
        )

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        rt = self.runtime
        if checkpoint["vocab"] != self.data.tokenizer.chars:
            raise DataError(
                "the checkpoint was trained on a different vocabulary than this data "
                f"({len(checkpoint['vocab'])} vs {self.data.tokenizer.vocab_size} characters)"
            )
        load_weights(self.model, checkpoint["model"])
        # keep this machine's kernel choice (fused, foreach), not the one the checkpoint was made on
        saved = checkpoint["optimizer"]
        if len(saved) != len(self.optimizers):
            raise DataError(
                f"the checkpoint holds the state of {len(saved)} optimizer(s), this run has "
                f"{len(self.optimizers)}: resume with the optimizer it was trained with"
            )
        for optimizer, state in zip(self.optimizers, saved, strict=True):
            kernels = [
                {k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups
            ]
            optimizer.load_state_dict(state)
            for group, chosen in zip(optimizer.param_groups, kernels, strict=True):
                group.update(chosen)
        if checkpoint["scaler"]:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.iter_num = checkpoint["iter_num"]
        self.best_val_loss = checkpoint["best_val_loss"]
        self.eval_losses = checkpoint["eval_losses"]
        rng_states = checkpoint["rng"]
        if len(rng_states) == rt.world_size:
            self.streams.load_state_dict(rng_states[rt.rank])
        else:  # another world size: the batch streams cannot continue, so start new ones
            self.console.print(
                f"note: checkpoint made with {len(rng_states)} process(es), resumed with "
                f"{rt.world_size}: batches are reseeded; the run goes on, not exactly"
            )
            self.streams.batches.manual_seed(
                derived_seed(self.config.seed, "train", rt.rank, self.iter_num)
            )

    def save(self, best: bool = False) -> None:
        """last.pt (and best.pt) in out_dir. Every rank must call it; rank 0 copies the state to
        the CPU, and the background thread writes it (`self.background.wait()`: until on disk)."""
        rng_states = all_rng_states(self.runtime, self.streams)
        last = self.out_dir / LAST
        if self.runtime.is_main:
            # best.pt first: a failure between the two writes leaves best.pt the newer, never a
            # best.pt older than what last.pt calls the best (see rundir.reconcile_best)
            paths = [self.out_dir / BEST, last] if best else [last]
            state = cpu_copy(self.state_dict(rng_states))
            self.background.submit(lambda: self._write_checkpoint(state, paths))

    def _write_checkpoint(self, state: dict[str, Any], paths: list[Path]) -> None:
        save_checkpoint(state, *paths)
        if self.on_first_checkpoint is not None:
            self.on_first_checkpoint()
            self.on_first_checkpoint = None


class Clock:
    """Training's clock, started once per loop: tokens per second since the last reading, with
    evaluations left out (`paused`), and the time left at the pace so far, evaluations included."""

    def __init__(self, synchronize: Callable[[], None], iter_num: int) -> None:
        self.synchronize = synchronize
        self.start(iter_num)

    def start(self, iter_num: int) -> None:
        self.started = self.last_read = time.perf_counter()
        self.start_iter, self.tokens, self.paused_for = iter_num, 0, 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The block's time is not training's (the device's queued work is timed first)."""
        self.synchronize()
        began = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            self.paused_for += time.perf_counter() - began

    def tokens_per_sec(self) -> float:
        now = time.perf_counter()
        rate = self.tokens / max(now - self.last_read - self.paused_for, 1e-9)
        self.last_read, self.tokens, self.paused_for = now, 0, 0.0
        return rate

    def time_left(self, iter_num: int, max_iters: int) -> str:
        elapsed, done = time.perf_counter() - self.started, max(iter_num - self.start_iter, 1)
        return tqdm.format_interval(elapsed / done * (max_iters - iter_num))


def run_work(config: TrainConfig, start: int) -> float:
    """What is left of a run from iteration `start`, in training micro-steps: each optimizer
    step's micro-batches, and every evaluation batch as a third of one (a forward pass without
    the backward)."""
    steps = max(0, config.max_iters - start)
    evaluation_batches = (steps // config.eval_interval + 1) * 2 * config.eval_iters
    return steps * config.gradient_accumulation_steps + evaluation_batches / 3
