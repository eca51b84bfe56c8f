"""The optimizers: which parameters each gets, MuonFP32 against torch.optim.Muon, the
orthogonalised update and the shared schedule (exact resume with both: tests/test_train.py)."""

from __future__ import annotations

import pytest
import torch

from infra.device import Runtime
from training import optim
from training.optim import MuonFP32, build_optimizers, orthogonalize
from training.trainer import Trainer

# the shapes of a block's matrices at n_embd 128: qkv (tall), attention out (square), MLP in
# (tall) and out (wide)
SHAPES = [(384, 128), (128, 128), (512, 128), (128, 512)]
NS = dict(coefficients=(3.4445, -4.7750, 2.0315), steps=5, eps=1e-7)  # torch.optim.Muon's


def cpu() -> Runtime:
    return Runtime(torch.device("cpu"), torch.float32)


def test_muon_gets_the_block_matrices_and_adamw_the_rest_each_parameter_once(
    tiny_config, shakespeare
):
    trainer = Trainer(tiny_config(optimizer="muon"), cpu(), shakespeare)
    adamw, muon = trainer.optimizers
    assert type(adamw) is torch.optim.AdamW and isinstance(muon, torch.optim.Muon)
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    owners: dict[str, list[str]] = {}
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                owners.setdefault(names[id(p)], []).append(type(optimizer).__name__)
    assert sorted(owners) == sorted(names.values())  # every parameter ...
    assert all(len(o) == 1 for o in owners.values()), owners  # ... in exactly one optimizer
    muon_names = {name for name, o in owners.items() if o == [type(muon).__name__]}
    assert muon_names == {
        name
        for name, p in trainer.model.named_parameters()
        if name.startswith("transformer.h.") and p.dim() == 2
    }
    assert "transformer.wte.weight" not in muon_names  # the embedding, tied to the head


def test_adamw_alone_gets_every_parameter_once(tiny_config, shakespeare):
    trainer = Trainer(tiny_config(optimizer="adamw"), cpu(), shakespeare)
    (adamw,) = trainer.optimizers
    assert type(adamw) is torch.optim.AdamW
    held = [id(p) for group in adamw.param_groups for p in group["params"]]
    assert sorted(held) == sorted(id(p) for p in trainer.model.parameters())  # tied wte once


@pytest.mark.parametrize("native", [True, False])
def test_torch_muon_where_bf16_is_native_and_fp32_elsewhere(
    tiny_config, shakespeare, monkeypatch, native
):
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: native)
    _, muon = build_optimizers(
        Trainer(tiny_config(), cpu(), shakespeare).model,
        tiny_config(optimizer="muon"),
        torch.device("cpu"),
    )
    assert type(muon) is (torch.optim.Muon if native else MuonFP32)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("shape", SHAPES)
def test_orthogonalize_equals_the_iteration_written_out(shape):
    """The Gram-matrix form in orthogonalize against the textbook iteration, one matrix at a time:
    X <- aX + b(XXᵀ)X + c(XXᵀ)²X, five times, from G / ||G||, all in float64."""
    torch.manual_seed(2)
    gradients = torch.randn(2, *shape)
    a, b, c = NS["coefficients"]
    for gradient, ours in zip(gradients, orthogonalize(gradients, **NS), strict=True):
        x = gradient.double() / gradient.double().norm()
        for _ in range(5):
            xxt = x @ x.T
            x = a * x + b * xxt @ x + c * xxt @ xxt @ x
        torch.testing.assert_close(ours.double(), x, atol=1e-5, rtol=1e-4)


def test_muon_fp32_update_equals_torch_muon_to_bf16_precision():
    """Three steps of each, on the same gradients (momentum and weight decay at work): every
    update agrees to about 1%, what torch's bf16 Newton-Schulz iteration itself can resolve
    (bf16 keeps 8 bits: a relative rounding of 0.4% per operation)."""
    torch.manual_seed(0)
    start = [torch.randn(shape) * 0.02 for shape in [*SHAPES, SHAPES[0]]]  # a shape twice: batched
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    torchs = [torch.nn.Parameter(p.clone()) for p in start]
    ours_opt = MuonFP32(ours, lr=0.02, weight_decay=0.1)
    torch_opt = torch.optim.Muon(torchs, lr=0.02, weight_decay=0.1)
    for _ in range(3):
        before = [p.detach().clone() for p in torchs]
        for a, b in zip(ours, torchs, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        ours_opt.step()
        torch_opt.step()
        for a, b, b0 in zip(ours, torchs, before, strict=True):
            ours_update, torch_update = a.detach() - b0, b.detach() - b0
            assert relative_error(ours_update, torch_update) < 0.025, tuple(a.shape)
        for a, b in zip(ours, torchs, strict=True):  # the next step starts from the same point
            a.data.copy_(b.data)
    # the tolerance is not loose: one Newton-Schulz step fewer moves the update by over 30%
    gradient = torch.randn(1, *SHAPES[0])
    five, four = (orthogonalize(gradient, **{**NS, "steps": n}) for n in (5, 4))
    assert relative_error(four, five) > 0.3


def matrices_with_singular_values(shape: tuple[int, int], values: torch.Tensor) -> torch.Tensor:
    """U diag(values) Vᵀ with random orthonormal U and V."""
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k))
    return u @ torch.diag(values) @ v.T


@pytest.mark.parametrize("shape", SHAPES)
def test_orthogonalised_update_has_singular_values_near_one(shape):
    """Muon's update of a matrix has every singular value within about 0.5 to 1.5 (torch.optim.
    Muon's documentation), though the gradient's own singular values spread 10-fold. (Directions
    far weaker than that, below about 1/300 of the gradient's norm, are not lifted that far.)"""
    torch.manual_seed(1)
    spread = torch.logspace(0, 1, min(shape))  # from 1 to 10
    gradient = matrices_with_singular_values(shape, spread[torch.randperm(len(spread))])
    after = torch.linalg.svdvals(orthogonalize(gradient[None], **NS))
    assert after.min() > 0.5 and after.max() < 1.5, (after.min(), after.max())
    # and through the optimizer: momentum 0, no decay, lr 1 makes the step the update itself
    p = torch.nn.Parameter(torch.zeros(shape))
    p.grad = gradient.clone()
    MuonFP32([p], lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.0).step()
    scale = max(1.0, shape[0] / shape[1]) ** 0.5  # torch's "original" rms adjustment
    steps = torch.linalg.svdvals(-p.detach() / scale)
    assert steps.min() > 0.5 and steps.max() < 1.5


def test_muon_state_moves_between_torch_muon_and_fp32():
    """A run may change machines: torch.optim.Muon's state_dict loads into MuonFP32 and back."""
    p = torch.nn.Parameter(torch.randn(64, 32))
    p.grad = torch.randn_like(p)
    torch_opt = torch.optim.Muon([p], lr=0.02)
    torch_opt.step()
    ours = MuonFP32([p], lr=0.02)
    ours.load_state_dict(torch_opt.state_dict())
    assert torch.equal(ours.state[p]["momentum_buffer"], torch_opt.state[p]["momentum_buffer"])
    before = ours.state[p]["momentum_buffer"].clone()
    ours.step()  # the state moves on in MuonFP32 ...
    back = torch.optim.Muon([p], lr=0.02)
    back.load_state_dict(ours.state_dict())  # ... and back into torch's Muon
    assert torch.equal(back.state[p]["momentum_buffer"], ours.state[p]["momentum_buffer"])
    assert not torch.equal(back.state[p]["momentum_buffer"], before)


def test_each_optimizer_runs_the_schedule_at_its_own_peak_rate(tiny_config, shakespeare):
    """The rates the optimizers hold during each step, against the schedule written out: a linear
    warm-up over 4 steps from peak/5, then a straight line down to min_lr_ratio of the peak at
    step 10 (both optimizers; Muon's peak is muon_lr_ratio times learning_rate)."""
    config = tiny_config(
        optimizer="muon", learning_rate=1e-3, min_lr_ratio=0.1, muon_lr_ratio=50, warmup_iters=4,
        lr_schedule="linear", max_iters=10,
    )  # fmt: skip
    trainer = Trainer(config, cpu(), shakespeare)
    factors = [1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0, 1 - 0.9 / 6, 1 - 1.8 / 6]
    for factor in factors:
        trainer.train_step()
        adamw, muon = ([g["lr"] for g in o.param_groups] for o in trainer.optimizers)
        assert adamw == [pytest.approx(1e-3 * factor)] * 2
        assert muon == [pytest.approx(0.05 * factor)]


def test_weight_decay_applies_to_matrices_only(tiny_config, shakespeare):
    trainer = Trainer(tiny_config(), cpu(), shakespeare)
    decayed, plain = trainer.optimizers[0].param_groups
    assert decayed["weight_decay"] > 0 and plain["weight_decay"] == 0
    assert all(p.dim() == 2 for p in decayed["params"])
    assert all(p.dim() == 1 for p in plain["params"])
    n_params = sum(p.numel() for g in trainer.optimizers[0].param_groups for p in g["params"])
    assert n_params == trainer.model.num_params(non_embedding=False)
