"""Run by tests/test_distributed.py under torchrun: a few Trainer steps on fixed examples.

Every step, the whole batch is the same 16 windows on every process; rank r trains on its share,
split into micro-batches. Rank 0 saves the gradient the optimizer received at the first step and the
weights after the last, for the test to compare with a single process training on all 16 at once.
(The gradient is the sharp comparison: Adam's update barely changes if a gradient is scaled, so a
sum where a mean belongs would hide in the weights.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from data import CharTokenizer, PreparedData, get_batch
from training.config import TrainConfig
from training.distributed import runtime_for
from training.trainer import Trainer

BATCH, BLOCK, STEPS = 16, 16, 3


def synthetic_data() -> PreparedData:
    tokens = torch.randint(0, 65, (4000,), generator=torch.Generator().manual_seed(0))
    tokenizer = CharTokenizer([chr(33 + i) for i in range(65)])
    return PreparedData(tokens, tokens.clone(), tokenizer, Path("synthetic"))


def fixed_batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [get_batch(synthetic_data().train, BATCH, BLOCK, generator) for _ in range(steps)]


def config(micro_batches: int, batch_size: int, out_dir: str) -> TrainConfig:
    return TrainConfig(
        batch_size=batch_size,
        block_size=BLOCK,
        n_layer=2,
        n_head=2,
        n_embd=32,
        dropout=0.0,
        learning_rate=1e-2,
        warmup_iters=0,
        max_iters=STEPS,
        device="cpu",
        out_dir=out_dir,
        grad_clip=0.0,
        gradient_accumulation_steps=micro_batches,
        tensorboard=False,
    )


def train_on(trainer: Trainer, rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """STEPS optimizer steps; this rank's share of each fixed batch, cut into micro-batches.
    Returns the gradients the optimizer saw at the first step."""
    first_grads: dict[str, torch.Tensor] = {}
    optimizer_step = trainer.optimizers[0].step

    def record_then_step(*args, **kwargs):
        if not first_grads:
            for name, p in trainer.model.named_parameters():
                first_grads[name] = p.grad.detach().clone()
        return optimizer_step(*args, **kwargs)

    trainer.optimizers[0].step = record_then_step
    share = BATCH // world_size
    micro = trainer.config.batch_size
    for x, y in fixed_batches(STEPS):
        xs, ys = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        micro_batches = [(xs[i : i + micro], ys[i : i + micro]) for i in range(0, share, micro)]
        assert len(micro_batches) == trainer.accum_steps
        trainer.train_batches = iter(micro_batches)
        trainer.train_step()
    return first_grads


def main() -> None:
    out = Path(sys.argv[1])
    with runtime_for("cpu", "float32") as runtime:
        # 2 micro-batches of 4 per rank: 4 in all over 2 ranks, so no_sync is exercised too
        trainer = Trainer(config(4, 4, str(out.parent)), runtime, synthetic_data())
        grads = train_on(trainer, runtime.rank, runtime.world_size)
        if runtime.is_main:
            torch.save({"grads": grads, "weights": trainer.model.state_dict()}, out)


if __name__ == "__main__":
    main()
