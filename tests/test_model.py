"""The GPT model against independent references: the attention formula written out, a Python
loop, the causal property, and the known loss at initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_gpt_config

from infra.errors import ConfigError
from model import GPT, GPTConfig
from model.gpt import CausalSelfAttention, attention_kernel


def reference_attention(x: torch.Tensor, attn: CausalSelfAttention) -> torch.Tensor:
    """softmax(QKᵀ/√d_k)V per head with a causal mask, one head at a time, from the module's
    weights; then the output projection."""
    T, C = x.shape[1:]
    nh = attn.n_head
    d_k = C // nh
    qkv = x @ attn.c_attn.weight.T + attn.c_attn.bias
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
    heads = []
    for h in range(nh):
        cols = slice(h * d_k, (h + 1) * d_k)
        scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(d_k)  # (B, T, T)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ v[..., cols])
    y = torch.cat(heads, dim=-1)
    return y @ attn.c_proj.weight.T + attn.c_proj.bias


@pytest.mark.parametrize("attn_impl", ["auto", "sdpa", "math"])
def test_attention_equals_explicit_causal_softmax_formula(attn_impl):
    attn = CausalSelfAttention(tiny_gpt_config(attn_impl=attn_impl)).eval()
    for p in attn.parameters():  # non-zero biases, so a wrong bias path would show
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 11, 32)
    torch.testing.assert_close(attn(x), reference_attention(x, attn), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
@pytest.mark.parametrize("attn_impl", ["auto", "sdpa", "math"])
def test_future_tokens_do_not_change_past_logits(pos_embedding, attn_impl):
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding, attn_impl=attn_impl)).eval()
    idx = torch.randint(0, 65, (2, 16))
    changed = idx.clone()
    t = 6
    changed[:, t + 1 :] = torch.randint(0, 65, (2, 16 - t - 1))
    logits, _ = model(idx)
    logits_changed, _ = model(changed)
    torch.testing.assert_close(logits[:, : t + 1], logits_changed[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(logits[:, t + 1 :], logits_changed[:, t + 1 :])


def test_auto_attention_is_the_formula_for_many_low_precision_queries_on_a_cpu_else_sdpa():
    cpu, cuda, bf16 = torch.device("cpu"), torch.device("cuda"), torch.bfloat16  # no GPU needed
    assert attention_kernel("auto", cpu, 128, bf16) == "math"  # training, a prompt
    assert attention_kernel("auto", cpu, 128, torch.float16) == "math"
    assert attention_kernel("auto", cpu, 1, bf16) == "sdpa"  # a cached step
    assert attention_kernel("auto", cpu, 128, torch.float32) == "sdpa"
    assert attention_kernel("auto", cuda, 128, bf16) == "sdpa"
    assert attention_kernel("sdpa", cpu, 128, bf16) == "sdpa"  # set, it is forced
    assert attention_kernel("math", cuda, 1) == "math"


def test_the_kernels_give_the_same_training_loss_and_gradients_within_fp32_precision():
    torch.manual_seed(0)
    models = {impl: GPT(tiny_gpt_config(attn_impl=impl, pos_embedding="rope")) for impl in
              ("auto", "sdpa", "math")}  # fmt: skip
    for model in models.values():
        model.load_state_dict(models["math"].state_dict())
    x, y = torch.randint(0, 65, (4, 16)), torch.randint(0, 65, (4, 16))
    results = {}
    for impl, model in models.items():
        _, loss = model(x, y)
        loss.backward()
        results[impl] = (loss, [p.grad for p in model.parameters()])
    for impl in ("auto", "sdpa"):
        torch.testing.assert_close(results[impl][0], results["math"][0], atol=1e-6, rtol=1e-6)
        for got, want in zip(results[impl][1], results["math"][1], strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
def test_loss_at_initialisation_is_about_ln_vocab_size(pos_embedding):
    """An untrained model should be close to uniform over the vocabulary: loss ≈ ln(65) ≈ 4.17."""
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding))
    idx = torch.randint(0, 65, (8, 16))
    targets = torch.randint(0, 65, (8, 16))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(65)) < 0.1


def test_model_overfits_one_small_batch():
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config())
    idx = torch.randint(0, 65, (4, 16))
    targets = torch.randint(0, 65, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1, f"could not memorise one batch: loss {loss.item():.3f}"


def test_state_dict_uses_gpt2_parameter_names():
    names = set(GPT(tiny_gpt_config()).state_dict())
    expected = {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.ln_2.weight",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.1.mlp.c_proj.bias",
        "transformer.ln_f.weight",
        "lm_head.weight",
    }
    assert expected <= names
    assert not any("bias" in n for n in GPT(tiny_gpt_config(bias=False)).state_dict())


def test_the_head_reads_logits_off_the_token_embedding():
    """Tied weights (Press & Wolf 2017): each character's logit is the final hidden state's dot
    product with that character's embedding, and a change to the embedding changes the head."""
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config()).eval()
    hidden = []
    model.transformer.ln_f.register_forward_hook(lambda module, args, out: hidden.append(out))
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        logits, _ = model(idx)
        torch.testing.assert_close(logits, hidden[0] @ model.transformer.wte.weight.T)
        model.transformer.wte.weight[7] += 1.0  # character 7's embedding, and so its logit
        changed, _ = model(idx)
    assert sum(p.numel() for p in model.parameters()) == model.num_params(non_embedding=False)
    torch.testing.assert_close(changed[..., 7], hidden[1] @ model.transformer.wte.weight[7])


def test_initialisation_scales_residual_projections_by_depth():
    torch.manual_seed(0)
    n_layer = 8
    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=n_layer, n_head=4, n_embd=256))
    c_fc_std = torch.cat([b.mlp.c_fc.weight.flatten() for b in model.transformer.h]).std().item()
    c_proj_std = torch.cat([b.mlp.c_proj.weight.flatten() for b in model.transformer.h]).std()
    assert c_fc_std == pytest.approx(0.02, rel=0.02)
    assert c_proj_std.item() == pytest.approx(0.02 / math.sqrt(2 * n_layer), rel=0.02)
    assert model.transformer.h[0].attn.c_attn.bias.abs().max() == 0


def test_parameter_count_matches_the_architecture():
    V, T, L, C = 65, 16, 2, 32
    per_block = (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C) + 4 * C
    total = V * C + T * C + L * per_block + 2 * C  # wte (tied head), wpe, blocks, ln_f
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=4, n_embd=C))
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - T * C


def test_impossible_configurations_are_clear_errors():
    with pytest.raises(ConfigError, match="divisible by n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="dropout"):
        GPTConfig(dropout=1.0)
    model = GPT(tiny_gpt_config())
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_rotary_embedding_is_a_complex_rotation_by_position_times_frequency():
    """RoFormer's definition: channel pairs (i, i + hs/2) as complex numbers, multiplied by
    exp(i * p * theta_i) with theta_i = 10000^(-2i/hs)."""
    from model.gpt import apply_rotary, rotary_tables

    T, hs = 10, 8
    x = torch.randn(2, T, 3, hs)  # (B, T, heads, hs)
    rotated = apply_rotary(x, *rotary_tables(hs, T))
    theta = 10000.0 ** (-torch.arange(0, hs, 2).double() / hs)
    for p in range(T):
        z = torch.complex(x[:, p, :, : hs // 2].double(), x[:, p, :, hs // 2 :].double())
        expected = z * torch.exp(1j * p * theta)
        torch.testing.assert_close(rotated[:, p, :, : hs // 2].double(), expected.real)
        torch.testing.assert_close(rotated[:, p, :, hs // 2 :].double(), expected.imag)


def test_rotary_attention_scores_depend_only_on_relative_position():
    from model.gpt import apply_rotary, rotary_tables

    hs = 16
    cos, sin = rotary_tables(hs, 64)
    q, k = torch.randn(1, 1, 1, hs), torch.randn(1, 1, 1, hs)

    def score(p_q: int, p_k: int) -> torch.Tensor:
        rq = apply_rotary(q, cos[p_q : p_q + 1], sin[p_q : p_q + 1])
        rk = apply_rotary(k, cos[p_k : p_k + 1], sin[p_k : p_k + 1])
        return (rq * rk).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_rope_model_has_no_position_table_and_a_state_dict_without_buffers():
    model = GPT(tiny_gpt_config(pos_embedding="rope"))
    assert "transformer.wpe.weight" not in model.state_dict()
    assert not any("rope" in name for name in model.state_dict())


@pytest.mark.parametrize(
    "options",
    [{}, {"bias": False}, {"pos_embedding": "rope", "n_head": 2}, {"n_layer": 3, "n_embd": 48}],
)
def test_the_parameter_count_from_the_config_is_the_models(options):
    from model.config import parameter_count

    config = tiny_gpt_config(**options)
    assert parameter_count(config) == sum(p.numel() for p in GPT(config).parameters())
