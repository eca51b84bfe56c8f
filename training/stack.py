"""Variants of one model trained as one stack (a sweep's `stack: true`): one forward and backward
for all of them, each variant's optimizers its own.

The variants' parameters live in (N, ...) tensors (torch.func.stack_module_state); each
variant's GPT holds views of its slice, so its checkpoint, its evaluations and its optimizers see
a model like any other. A step runs the one model definition (model/gpt.py) through
torch.func.vmap over functional_call, N batches at once, and backpropagates the sum of the N
losses: each variant's gradient is its own loss's alone. Then every variant's trainer finishes
the step as a run alone does (unscale, clip, its optimizers' step), so each variant follows its
own learning rate, schedule, weight decay, betas and clipping.

Dropout in a stack draws from one stream of the stack's, so a stacked variant with dropout sees
other masks than it would alone; without dropout it computes what it would alone, to the order of
the sums in a batched matrix product.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, stack_module_state, vmap

from model.gpt import sharing_copy
from training.rng import derived_seed, global_generators, global_state
from training.trainer import Trainer


class Stack:
    def __init__(self, trainers: list[Trainer], compiled: bool = False) -> None:
        self.trainers, self.runtime = trainers, trainers[0].runtime
        self.params, self.buffers = stack_module_state([t.model for t in trainers])
        for name, stacked in self.params.items():  # each model's weights become views
            for i, trainer in enumerate(trainers):
                trainer.model.get_parameter(name).data = stacked.data[i]
        model = trainers[0].model  # the one definition; functional_call swaps in the weights
        if self.runtime.device.type == "cpu" and model.config.attn_impl == "auto":
            # vmap batches the formula, where it runs CPU SDPA variant by variant: a copy of the
            # modules (sharing every tensor) whose attention is the formula
            model = sharing_copy(model)
            for block in model.transformer.h:
                block.attn.attn_impl = "math"

        def loss(params, buffers, x, y):
            return functional_call(model, (params, buffers), (x, y))[1]

        self.losses = vmap(loss, randomness="different")  # (N,) from (N, B, T) batches
        if compiled:
            self.losses = torch.compile(self.losses)
        seed = derived_seed(trainers[0].config.seed, "stack", len(trainers))
        self.dropout_state = global_state(self.runtime.device, seed)

    def step(self, active: list[Trainer]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One optimizer step of every trainer in `active` (those of the stack not stopped):
        their mean losses and gradient norms. The others' losses are computed and left alone."""
        for trainer in active:
            trainer.begin_step()
        for stacked in self.params.values():
            stacked.grad = None
        accum = self.trainers[0].accum_steps
        mean_losses = torch.zeros(len(self.trainers), device=self.runtime.device)
        with global_generators(self.dropout_state, self.runtime.device):
            for _ in range(accum):
                batches = [next(t.train_batches) for t in self.trainers]
                x, y = (torch.stack(part) for part in zip(*batches, strict=True))  # (N, B, T)
                with self.runtime.autocast():
                    losses = self.losses(self.params, self.buffers, x, y) / accum  # (N,)
                scaled = zip(self.trainers, losses, strict=True)
                torch.stack([t.scaler.scale(loss) for t, loss in scaled]).sum().backward()
                mean_losses += losses.detach()
        results = []
        for trainer in active:
            i = self.trainers.index(trainer)
            for name, param in trainer.model.named_parameters():
                param.grad = self.params[name].grad[i]
            results.append(trainer.end_step(mean_losses[i]))
        return results
