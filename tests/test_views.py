"""The views inside the model computed right: attention maps against the formula from a layer's
weights, the pictures TensorBoard shows, histograms against numpy's, and the exact evaluation
against a brute-force loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_gpt_config
from torch.nn import functional as F

from data import CharTokenizer
from model import GPT
from model.attention_maps import attention_inputs, attention_maps
from model.gpt import causal_softmax
from model.scoring import exact_loss, window_plan
from viz.figures import FUTURE_PINK, AttentionPictures, attention_figure
from viz.inspection import histograms

BLOCK = 16


def small_model(pos_embedding: str, **overrides) -> GPT:
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding, **overrides)).eval()
    with torch.no_grad():  # weights large enough that attention is far from a plain average
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
            else:
                p.normal_(1.0 if name.endswith(("ln_1.weight", "ln_2.weight")) else 0.0, 0.2)
    return model


def weights_from_the_formula(model: GPT, layer: int, idx: torch.Tensor) -> torch.Tensor:
    """softmax(QKᵀ/√d_k) with a causal mask, head by head, from the layer's input and weights;
    rotary positions written as complex rotations (RoFormer)."""
    cfg, B, T = model.config, *idx.shape
    x = model.transformer.wte.weight[idx]
    if cfg.pos_embedding == "learned":
        x = x + model.transformer.wpe.weight[:T]
    for block in model.transformer.h[:layer]:
        x = block(
            x, (model.rope_cos[:T], model.rope_sin[:T]) if cfg.pos_embedding == "rope" else None
        )
    block, C, nh = model.transformer.h[layer], cfg.n_embd, cfg.n_head
    hs = C // nh
    h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias)
    qkv = h @ block.attn.c_attn.weight.T + block.attn.c_attn.bias
    maps = torch.zeros(B, nh, T, T)
    theta = 10000.0 ** (-torch.arange(0, hs, 2).double() / hs)
    turn = torch.exp(1j * torch.arange(T).double()[:, None] * theta)  # (T, hs/2)

    def rotate(z: torch.Tensor) -> torch.Tensor:
        c = torch.complex(z[..., : hs // 2].double(), z[..., hs // 2 :].double()) * turn
        return torch.cat((c.real, c.imag), dim=-1).float()

    for head in range(nh):
        q = qkv[..., head * hs : (head + 1) * hs]
        k = qkv[..., C + head * hs : C + (head + 1) * hs]
        if cfg.pos_embedding == "rope":
            q, k = rotate(q), rotate(k)
        for t in range(T):
            scores = (q[:, t : t + 1] @ k[:, : t + 1].transpose(1, 2))[:, 0] / math.sqrt(hs)
            maps[:, head, t, : t + 1] = torch.softmax(scores, dim=-1)
    return maps


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
def test_attention_maps_are_the_formula_from_each_layers_weights(pos_embedding):
    model = small_model(pos_embedding)
    idx = torch.randint(0, 65, (2, BLOCK))
    maps = attention_maps(model, idx)
    assert len(maps) == 2 and maps[0].shape == (2, 4, BLOCK, BLOCK)
    for layer in range(2):
        with torch.no_grad():
            expected = weights_from_the_formula(model, layer, idx)
        torch.testing.assert_close(maps[layer], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(maps[layer].sum(-1), torch.ones(2, 4, BLOCK))  # rows sum to 1
        above = torch.ones(BLOCK, BLOCK, dtype=torch.bool).triu(1)
        assert torch.all(maps[layer][..., above] == 0)  # exactly 0: the future is masked
        plain_average = torch.tril(torch.ones(BLOCK, BLOCK)) / torch.arange(1, BLOCK + 1)[:, None]
        assert (maps[layer] - plain_average).abs().max() > 0.2  # a test that could tell


def split_into_heads_by_hand(z: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs): head h is channels h*hs .. (h+1)*hs - 1, one slice at a time."""
    hs = z.size(-1) // n_head
    return torch.stack([z[..., h * hs : (h + 1) * hs] for h in range(n_head)], dim=1)


def turned_by_hand(z: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (B, nh, T, hs): channel pair (i, i + hs/2) at position p as the complex
    number z_i + i z_(i+hs/2), multiplied by exp(i p 10000^(-2i/hs)) (RoFormer)."""
    T, hs = z.size(-2), z.size(-1)
    theta = 10000.0 ** (-torch.arange(0, hs, 2).double() / hs)
    turn = torch.exp(1j * torch.arange(T).double()[:, None] * theta)  # (T, hs/2)
    c = torch.complex(z[..., : hs // 2].double(), z[..., hs // 2 :].double()) * turn
    return torch.cat((c.real, c.imag), dim=-1).float()


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
def test_attention_inputs_are_each_layers_c_attn_applied_by_hand_to_ln_1_of_its_input(
    pos_embedding,
):
    # dropout on and the model training: the q, k, v must still be those of an eval-mode pass
    model = small_model(pos_embedding, dropout=0.5).train()
    idx = torch.randint(0, 65, (2, BLOCK))
    inputs = attention_inputs(model, idx)
    assert model.training  # put back in the mode it was in
    assert len(inputs) == model.config.n_layer

    model.eval()
    C, nh, rope = model.config.n_embd, model.config.n_head, pos_embedding == "rope"
    rotary = (model.rope_cos[:BLOCK], model.rope_sin[:BLOCK]) if rope else None
    with torch.no_grad():
        x = model.transformer.wte.weight[idx]  # (B, T, C): layer 0's input
        if not rope:
            x = x + model.transformer.wpe.weight[:BLOCK]
        for layer, block in enumerate(model.transformer.h):
            h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias)
            qkv = h @ block.attn.c_attn.weight.T + block.attn.c_attn.bias  # (B, T, 3C)
            q, k, v = (split_into_heads_by_hand(part, nh) for part in qkv.split(C, dim=-1))
            if rope:
                q, k = turned_by_hand(q), turned_by_hand(k)
            for got, expected in zip(inputs[layer], (q, k, v), strict=True):
                assert got.shape == (2, nh, BLOCK, C // nh) and not got.requires_grad
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            x = block(x, rotary)  # the next layer's input


def test_tensorboards_picture_of_each_layer_is_titled_with_that_layers_number():
    model = small_model("learned", n_layer=3)
    idx = torch.tensor([list(range(10))])
    pictures = AttentionPictures(list(range(10)), CharTokenizer([chr(65 + i) for i in range(10)]))
    for layer, maps in enumerate(attention_maps(model, idx)):
        pictures.draw(layer, maps[0], f"layer {layer}")
        figure = pictures.layers[layer][0]
        titles = [ax.get_title() for ax in figure.axes if ax.images and ax.get_title()]
        assert titles == [f"layer {layer}, head {h}" for h in range(model.config.n_head)]


def test_a_redrawn_attention_picture_has_the_pixels_of_one_drawn_afresh():
    """The pictures after the first draw only the new weights and title over the saved
    drawing: they must equal, pixel for pixel, a figure drawn from nothing."""
    from torch.utils.tensorboard._utils import figure_to_image

    text = "To be, or not"
    tokenizer = CharTokenizer.from_text(text)
    pictures = AttentionPictures(tokenizer.encode(text), tokenizer)
    chars = list(text)
    generator = torch.Generator().manual_seed(0)
    for step in (1, 2, 3):
        maps = torch.rand(2, len(chars), len(chars), generator=generator).tril()
        maps = maps / maps.sum(-1, keepdim=True)
        title = f"layer 1 at iteration {step}"
        redrawn = pictures.draw(1, maps, title)
        fresh = figure_to_image(attention_figure([maps], chars, title, 1, heads_down=True))
        assert redrawn.shape == fresh.transpose(1, 2, 0).shape
        assert (redrawn == fresh.transpose(1, 2, 0)).all(), f"pixels differ at step {step}"


def test_the_masked_future_is_pink_and_a_past_weight_of_0_is_viridis_0_in_every_picture():
    """Above the diagonal (key after query) the causal mask forbids: drawn apart from a weight of
    0 a query could have given, in the first picture and in those redrawn over it."""
    import matplotlib
    from matplotlib.colors import to_rgb

    text = "abcdef"
    tokenizer = CharTokenizer.from_text(text)
    pictures = AttentionPictures(tokenizer.encode(text), tokenizer)
    maps = torch.zeros(1, 6, 6)
    maps[0, :, 0] = 1.0  # every query on the first key: the rest of the past is weight 0
    pink = np.round(255 * np.array(to_rgb(FUTURE_PINK)))
    zero = np.round(255 * np.array(matplotlib.colormaps["viridis"](0.0)[:3]))

    def colour(pixels: np.ndarray, query: int, key: int) -> np.ndarray:
        axes = pictures.layers[0][0].axes[0]
        x, y = axes.transData.transform((key, query))  # the cell's centre, from bottom left
        return pixels[int(pixels.shape[0] - y), int(x)].astype(float)

    for title in ("first", "redrawn"):
        pixels = pictures.draw(0, maps, title)
        assert np.abs(colour(pixels, 1, 4) - pink).max() <= 2, title  # the future
        assert np.abs(colour(pixels, 4, 1) - zero).max() <= 2, title  # the past, weight 0
        assert np.abs(colour(pixels, 4, 1) - pink).max() > 50, title


def test_histograms_counted_on_the_device_equal_numpys_over_the_same_buckets():

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "normal": torch.randn(1000, generator=generator),
        "constant": torch.ones(7),
        "wide": torch.randn(50, 3, generator=generator) * 100,
        "broken": torch.tensor([1.0, float("nan")]),
    }
    result = histograms(tensors, bins=10)
    assert set(result) == {"normal", "constant", "wide"}  # a non-finite tensor is left out
    for name, h in result.items():
        values = tensors[name].flatten().double().numpy()
        assert (h.min, h.max, h.num) == (values.min(), values.max(), values.size)
        assert h.sum == pytest.approx(values.sum(), rel=1e-5, abs=1e-4)
        assert h.sum_squares == pytest.approx((values**2).sum(), rel=1e-5)
        edges = np.concatenate(([h.min], h.bucket_limits))
        expected, _ = np.histogram(values, bins=edges)
        assert sum(h.bucket_counts) == values.size
        assert np.abs(np.array(h.bucket_counts) - expected).max() <= 1  # float32 edges


@pytest.mark.parametrize("n_tokens", [7, 40, 61])
def test_exact_loss_with_stride_1_equals_scoring_each_position_with_its_full_left_context(n_tokens):
    model = small_model("learned")
    tokens = torch.randint(0, 65, (n_tokens,), generator=torch.Generator().manual_seed(n_tokens))
    losses = []
    with torch.no_grad():
        for i in range(1, n_tokens):  # brute force: one position at a time
            context = tokens[max(0, i - BLOCK) : i]
            logits = model(context[None])[0][0, -1]
            losses.append(F.cross_entropy(logits[None], tokens[i : i + 1]).item())
    nats, count = exact_loss(model, tokens, stride=1, batch_size=5)
    assert count == n_tokens - 1
    assert nats == pytest.approx(sum(losses) / len(losses), abs=1e-5)


@pytest.mark.parametrize("n_tokens, block_size, stride", [(200, 16, 8), (201, 16, 5), (9, 16, 8)])
def test_window_plan_scores_every_character_once_with_at_least_half_a_block_of_context(
    n_tokens, block_size, stride
):
    T = min(block_size, n_tokens - 1)
    scored = [
        (start + j + 1, j + 1)  # (the token scored, its context length)
        for start, first in window_plan(n_tokens, block_size, stride)
        for j in range(first, T)
    ]
    assert [token for token, _ in scored] == list(range(1, n_tokens))
    assert all(context >= T // 2 for token, context in scored if token >= T // 2)
    with pytest.raises(ValueError, match="stride must be between 1 and"):
        window_plan(n_tokens, block_size, block_size // 2 + 1)


def test_the_page_formula_is_the_formula():
    """The scores the explorer page receives are q·kᵀ of CausalSelfAttention.project: softmax of
    them over √d_k, masked, is causal_softmax."""
    model = small_model("learned")
    attn = model.transformer.h[0].attn
    x = torch.randn(1, 9, model.config.n_embd)
    q, k, _ = attn.project(x)
    scores = q @ k.transpose(-2, -1)
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    by_hand = torch.softmax(scores.masked_fill(~mask, float("-inf")) / math.sqrt(q.size(-1)), -1)
    torch.testing.assert_close(by_hand, causal_softmax(q, k))
