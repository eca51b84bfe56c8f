"""The cached one-token step on the packed copy against the model's forward pass over the whole
sequence, and the packed matrix product against F.linear."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import tiny_gpt_config
from torch import nn
from torch.nn import functional as F

from model import GPT, GPTConfig, KVCache
from model.packed import PackedLinear, fastest_step_model, one_token_step, pack_linears

BLOCK = 16


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("pieces", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 20), (3, 20), (2, 1, 20)])
def test_packed_linear_equals_f_linear(bias, pieces, shape):
    torch.manual_seed(0)
    for out_features in (12, 48):
        linear = nn.Linear(20, out_features, bias=bias)
        if bias:
            nn.init.normal_(linear.bias)  # nonzero, so a dropped bias would show
        x = torch.randn(shape)
        expected = F.linear(x, linear.weight, linear.bias)
        torch.testing.assert_close(PackedLinear(linear, pieces)(x), expected)
    with pytest.raises(ValueError, match="5 pieces do not divide 12"):
        PackedLinear(nn.Linear(20, 12), 5)


def test_packed_linear_follows_its_weight_in_place():
    """The pieces are a view, not a copy: training on after a sample changes what it computes."""
    linear = nn.Linear(20, 12, bias=False)
    packed = PackedLinear(linear, 2)
    with torch.no_grad():
        linear.weight.mul_(-3.0)
    x = torch.randn(2, 20)
    torch.testing.assert_close(packed(x), F.linear(x, linear.weight))


def config(**overrides) -> GPTConfig:
    return tiny_gpt_config(**{"bias": False, **overrides})


def randomise(model: GPT) -> None:
    """Weights big enough that every detail shows in the logits: GPT-2's std 0.02 leaves
    activations so small that, say, the tanh GELU for the exact one would hide under 1e-5. And
    biases start at 0 and LayerNorms as the identity; give them values a missed one would show."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                module.weight.normal_(0.0, 1.0 / module.weight.size(-1) ** 0.5)
            if isinstance(module, nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
            if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is not None:
                module.bias.normal_(0.0, 0.2)


@pytest.mark.parametrize("pieces", [1, 2])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"bias": True},
        {"pos_embedding": "rope"},
        {"attn_impl": "math"},
        {"pos_embedding": "rope", "attn_impl": "math", "bias": True},
    ],
    ids=["learned", "bias", "rope", "math", "rope-math-bias"],
)
def test_packed_step_equals_the_model_forward_at_every_position(pieces, overrides):
    """Independent of the cache: each step's logits are model(tokens so far)[:, -1], from the
    first decoded position to the last one the window holds."""
    torch.manual_seed(0)
    model = GPT(config(**overrides)).eval()
    randomise(model)
    packed = pack_linears(model, pieces=pieces, min_packed=0)  # small weights: pack anyway
    assert packed.packed == (4 * model.config.n_layer if pieces > 1 else 0)
    tokens = torch.randint(0, 65, (2, BLOCK))
    cache = KVCache(model.config.n_layer, BLOCK)
    with torch.no_grad():
        model(tokens[:, :3], kv_cache=cache)  # the window's first pass fills positions 0..2
        for t in range(3, BLOCK):
            logits = one_token_step(packed, tokens[:, t], cache)
            expected = model(tokens[:, : t + 1])[0][:, -1]
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
            assert cache.length == t + 1


def test_packed_step_packs_only_large_weights_and_shares_every_other_tensor():
    model = GPT(config(n_embd=256, n_head=4)).eval()  # 256 x 256 = 65,536 < 2^17 < 4 x 256 x 256
    block = pack_linears(model, pieces=2).transformer.h[0]
    assert isinstance(block.attn.c_attn, PackedLinear) and isinstance(block.mlp.c_fc, PackedLinear)
    assert isinstance(block.mlp.c_proj, PackedLinear)
    assert not isinstance(block.attn.c_proj, PackedLinear)
    assert block.mlp.c_fc.pieces.data_ptr() == model.transformer.h[0].mlp.c_fc.weight.data_ptr()
    assert block.attn.c_proj.weight is model.transformer.h[0].attn.c_proj.weight
    assert block.ln_1.weight is model.transformer.h[0].ln_1.weight


def test_packed_step_refuses_a_full_cache():
    model = GPT(config()).eval()
    cache = KVCache(model.config.n_layer, BLOCK)
    onednn = torch.backends.mkldnn.enabled
    with torch.no_grad():
        model(torch.zeros(1, BLOCK, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ValueError, match=f"longer than block_size {BLOCK}"):
            one_token_step(pack_linears(model), torch.zeros(1, dtype=torch.long), cache)
    assert torch.backends.mkldnn.enabled is onednn  # the step turns oneDNN off only while it runs


class RecordOneDNN(nn.Module):
    """Wraps a module and records whether oneDNN was on each time it ran."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.backends.mkldnn.enabled)
        return self.inner(x)


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("autocast", [False, True])
def test_packed_step_turns_onednn_off_in_fp32_only_and_restores_it(onednn, autocast, monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)  # restored after the test
    model = GPT(config()).eval()
    packed = pack_linears(model)
    packed.lm_head = recorder = RecordOneDNN(packed.lm_head)
    cache = KVCache(model.config.n_layer, BLOCK)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
        one_token_step(packed, torch.zeros(1, dtype=torch.long), cache)
    assert recorder.seen == [onednn and autocast]  # bf16 keeps oneDNN's native kernels
    assert torch.backends.mkldnn.enabled is onednn


def test_packed_step_under_bf16_autocast_stays_close_to_the_model():
    """Training samples text under the run's autocast (cpu_fast.yaml: bf16 on the CPU)."""
    torch.manual_seed(0)
    model = GPT(config()).eval()
    tokens = torch.randint(0, 65, (1, 8))
    cache = KVCache(model.config.n_layer, BLOCK)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(tokens[:, :7], kv_cache=cache)
        logits = one_token_step(pack_linears(model, pieces=2, min_packed=0), tokens[:, 7], cache)
        expected = model(tokens)[0][:, -1]
    torch.testing.assert_close(logits.float(), expected.float(), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("slowed, chosen", [(PackedLinear, "model"), (nn.Linear, "packed")])
def test_generation_steps_with_whichever_copy_it_measured_faster_once_per_model(
    slowed, chosen, monkeypatch
):
    """A CPU where one kind of product is slow (a sleep stands in for it): the one-token step is
    the other copy's, measured at the first generation and kept for the model."""
    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=256)).eval()
    assert pack_linears(model, pieces=2).packed == 3  # c_attn, c_fc, mlp's c_proj: large enough
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two pieces on any machine
    forward, calls = slowed.forward, []

    def slow_forward(self, x):
        calls.append(slowed)
        time.sleep(0.005)
        return forward(self, x)

    monkeypatch.setattr(slowed, "forward", slow_forward)
    step = fastest_step_model(model)
    assert ("model" if step is model else "packed") == chosen
    timed = len(calls)
    fastest_step_model(model)  # a second generation measures nothing again
    assert len(calls) == timed
