"""Generation: the KV cache against the plain path, the sampling filters against brute force, and
sample.py end to end on a checkpoint that a tiny.yaml run writes here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import ROOT, tiny_gpt_config
from torch.nn import functional as F

import sample
from checkpoint import load_model
from model import GPT, generate, sample_next_token
from model.generate import Stepper, window_start
from model.graphed import static_one_token_step

BLOCK = 16


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_gpt_config()).eval()


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
@pytest.mark.parametrize("prompt_len", [1, BLOCK + 5])
def test_cached_logits_equal_a_fresh_forward_over_the_window(pos_embedding, prompt_len):
    """Independent of the cache: each step's logits are those of model(window) at its end, past
    several jumps of the window; the plain path is that same fresh forward."""
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding)).eval()
    idx = torch.randint(0, 65, (2, prompt_len))
    cached, plain = Stepper(model, use_kv_cache=True), Stepper(model, use_kv_cache=False)
    start = None
    for _ in range(2 * BLOCK + 3):
        start = window_start(idx.size(1), start, BLOCK)
        window = idx[:, start:]
        assert window.size(1) <= BLOCK
        with torch.no_grad():
            expected = model(window)[0][:, -1]
        torch.testing.assert_close(cached.logits(idx), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(plain.logits(idx), expected, atol=1e-5, rtol=1e-5)
        idx = torch.cat((idx, torch.randint(0, 65, (2, 1))), dim=1)


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
@torch.inference_mode()
def test_the_step_a_cuda_graph_records_gives_the_plain_paths_logits_and_tokens(pos_embedding):
    """static_one_token_step is the step GraphedStep records on a GPU (a tensor position,
    attention over the whole cache with later keys masked): here it runs on the CPU, without a
    graph, past several jumps of the window, against the plain path's fresh forward passes."""
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding)).eval()
    static, plain = Stepper(model, use_kv_cache=True), Stepper(model, use_kv_cache=False)

    def static_step(tokens: torch.Tensor, cache) -> torch.Tensor:  # GraphedStep, without a graph
        position = torch.full((1,), cache.length)
        logits = static_one_token_step(model, tokens[:, None], position, cache)
        cache.advance(1)
        return logits

    static.one_token = static_step
    idx = torch.randint(0, 65, (2, 3))
    generators = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(3 * BLOCK):
        expected = plain.logits(idx)
        logits = static.logits(idx)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        drawn = [
            sample_next_token(x, 1.0, generator=g)
            for x, g in zip((logits, expected), generators, strict=True)
        ]
        assert torch.equal(*drawn)
        idx = torch.cat((idx, drawn[0]), dim=1)


def test_context_window_jumps_to_keep_the_newest_half():
    assert window_start(5, None, 16) == 0
    assert window_start(40, None, 16) == 24  # a long prompt keeps its last block_size
    assert window_start(16, 0, 16) == 0  # full, still fits
    assert window_start(17, 0, 16) == 9  # overflow: keep the newest 8
    assert window_start(24, 9, 16) == 9
    assert window_start(26, 9, 16) == 18


def test_same_seed_gives_same_text_and_another_seed_does_not(model):
    prompt = torch.zeros(1, 1, dtype=torch.long)

    def draw(seed):
        return generate(model, prompt, 40, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_top_k_1_equals_greedy(model):
    prompt = torch.randint(0, 65, (2, 4))
    top1 = generate(
        model, prompt, 30, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0)
    )
    greedy = generate(model, prompt, 30, temperature=0.0)
    assert torch.equal(top1, greedy)


def support(logits: torch.Tensor, draws: int = 4000, **kwargs) -> set[int]:
    generator = torch.Generator().manual_seed(0)
    batch = logits.expand(draws, -1)
    return set(sample_next_token(batch, generator=generator, **kwargs).flatten().tolist())


def smallest_set_reaching(probs: list[float], p: float) -> set[int]:
    """Brute force: the most likely tokens, added one by one until their mass reaches p."""
    chosen, mass = set(), 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= p:
            break
        chosen.add(i)
        mass += probs[i]
    return chosen


@pytest.mark.parametrize("top_p", [0.3, 0.5, 0.6, 0.8, 0.81, 0.95, 0.99, 1.0])
def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p(top_p):
    probs = [0.05, 0.5, 0.15, 0.3]  # shuffled, so vocabulary order is not probability order
    logits = torch.tensor([probs]).log()
    assert support(logits, top_p=top_p) == smallest_set_reaching(probs, top_p)


def test_top_k_keeps_the_k_most_likely():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 2.5]])
    assert support(logits, top_k=2) == {1, 4}
    assert support(logits, top_k=10) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_samples_softmax_of_logits_over_temperature(temperature):
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    expected = F.softmax(logits / temperature, dim=-1)[0]
    generator = torch.Generator().manual_seed(0)
    draws = sample_next_token(logits.expand(20000, -1), temperature, generator=generator)
    observed = torch.bincount(draws.flatten(), minlength=3) / 20000
    torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


# ---- sample.py -----------------------------------------------------------------------------


def run_sample(capsys, *argv: str) -> tuple[int, str, str]:
    code = sample.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.e2e
def test_sampling_from_a_trained_checkpoint(tiny_run, capsys):
    argv = ("--prompt", "ROMEO:", "--num_samples", "3", "--max_new_tokens", "80", "--no-stream")
    code, out, _ = run_sample(capsys, "--ckpt", str(tiny_run), *argv)
    assert code == 0
    samples = out.split(sample.SEPARATOR + "\n")
    assert len(samples) == 3
    assert all(s.startswith("ROMEO:") for s in samples)
    assert all(len(s.rstrip("\n")) >= len("ROMEO:") + 70 for s in samples)  # newlines may trail


@pytest.mark.e2e
def test_sample_cli_is_deterministic_and_streaming_gives_the_same_text(tiny_run, capsys):
    argv = ("--ckpt", str(tiny_run / "last.pt"), "--max_new_tokens", "100", "--seed", "5")
    first = run_sample(capsys, *argv, "--no-stream")
    assert first == run_sample(capsys, *argv, "--no-stream")
    assert first == run_sample(capsys, *argv, "--stream")
    assert first != run_sample(capsys, *argv[:-1], "6", "--no-stream")
    greedy = (*argv, "--temperature", "0", "--max_new_tokens", "90")  # past block_size 32
    assert run_sample(capsys, *greedy) == run_sample(capsys, *greedy, "--no_kv_cache")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv, code, message",
    [
        (("--temperature", "-1"), 2, "temperature: must be 0 (greedy)"),
        (("--top_p", "0"), 2, "top_p: must be in (0, 1], got 0.0"),
        (("--top_p", "1.5"), 2, "top_p: must be in (0, 1], got 1.5"),
        (("--top_k", "0"), 2, "top_k: must be at least 1, got 0"),
        (("--prompt", ""), 2, "prompt is empty"),
        (("--prompt", "zebra€ and ☃"), 1, "characters '€', '☃' not in the vocabulary"),
        (("--prompt_file", "/no/such/prompt.txt"), 2, "does not exist"),
        (("--device", "cuda"), 1, "CUDA is not available"),
        (("--device", "tpu"), 1, "unknown device 'tpu'"),
        (("--device", "meta"), 1, "device 'meta' is not supported"),
        (("--bogus", "1"), 2, "unknown option --bogus"),
        (("--top_kk", "1"), 2, "unknown option --top_kk (did you mean top_k?)"),
        (("--temperature", "1e-45"), 2, "temperature: must be 0 (greedy) or at least"),
        (("--seed", "99999999999999999999"), 2, "seed: must be between 0 and 2**63 - 1"),
        (("--attention", "x.xyz"), 2, "the file's suffix chooses what is written"),
        (("--attention", "a_dir"), 2, "the file's suffix chooses what is written"),
        (("--no-kv-cache", "--bogus-flag"), 2, "unknown option --bogus-flag"),
    ],
)
def test_sample_cli_mistakes_are_one_line(tiny_run, capsys, argv, code, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result_code, out, err = run_sample(capsys, "--ckpt", str(tiny_run), *argv)
    assert (result_code, out) == (code, "")
    assert message in err and err.count("\n") == 1


@pytest.mark.e2e
def test_missing_or_corrupted_checkpoint_is_one_line(tmp_path, tiny_run, capsys):
    code, _, err = run_sample(capsys, "--ckpt", str(tmp_path / "nothing.pt"))
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    broken = tmp_path / "broken.pt"
    broken.write_bytes((tiny_run / "last.pt").read_bytes()[:5000])
    code, _, err = run_sample(capsys, "--ckpt", str(broken))
    assert code == 1 and "cannot read checkpoint" in err and err.count("\n") == 1
    code, _, err = run_sample(capsys, "--ckpt", str(tmp_path))
    assert code == 1 and "holds no checkpoint" in err


@pytest.mark.e2e
def test_prompt_longer_than_the_context_is_explained(tiny_run, capsys):
    code, out, err = run_sample(
        capsys, "--ckpt", str(tiny_run), "--prompt", "to be " * 10, "--max_new_tokens", "5"
    )
    assert code == 0 and out.startswith("to be " * 10)
    assert "the model sees only the last 32" in err


@pytest.mark.e2e
def test_dashed_spellings_work_as_the_options(tiny_run, capsys):
    code, out, _ = run_sample(
        capsys, "--ckpt", str(tiny_run), "--no-kv-cache", "--max-new-tokens", "5"
    )
    assert code == 0 and len(out) == 1 + 5 + 1  # the prompt, 5 characters, a newline


@pytest.mark.e2e
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_weights_that_are_nan_or_infinite_are_named_by_sample_and_evaluate(
    tiny_run, tmp_path, capsys, poison
):
    import evaluate
    from checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(tiny_run / "last.pt")
    checkpoint["model"]["transformer.h.0.mlp.c_fc.weight"][0, 0] = poison
    broken = tmp_path / "poisoned.pt"
    save_checkpoint(checkpoint, broken)
    for script in (sample, evaluate):
        assert script.main(["--ckpt", str(broken)]) == 1
        err = capsys.readouterr().err
        assert "NaN or infinite" in err and "mlp.c_fc.weight" in err and err.count("\n") == 1


@pytest.mark.e2e
@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_a_reader_that_goes_away_is_a_quiet_exit(tiny_run, stream):
    """`sample.py ... | head -c 10`: no traceback, no "Broken pipe" message."""
    process = subprocess.Popen(
        [sys.executable, "sample.py", "--ckpt", str(tiny_run), stream, "--num_samples", "50",
         "--max_new_tokens", "300"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    process.stdout.read(10)
    process.stdout.close()
    err = process.communicate(timeout=120)[1].decode()
    assert process.returncode in (0, 1) and err == "", err


@pytest.mark.e2e
@pytest.mark.parametrize("suffix", [".txt", ".svg", ""])
def test_any_other_suffix_is_one_line(tiny_run, tmp_path, capsys, suffix):
    code = sample.main(["--ckpt", str(tiny_run), "--attention", str(tmp_path / f"a{suffix}")])
    err = capsys.readouterr().err
    assert code == 2 and "suffix chooses" in err and err.count("\n") == 1


@pytest.mark.e2e
def test_explore_refuses_a_prompt_with_characters_the_model_never_saw(tiny_run):
    from infra.errors import ConfigError
    from viz import explore

    model, tokenizer = load_model(tiny_run)
    with pytest.raises(ConfigError, match="never saw"):
        explore(model, tokenizer, "ROMEO: ☃")
    explorer = explore(model, tokenizer, "ROMEO:", max_new_tokens=5)
    assert explorer.text.startswith("ROMEO:") and len(explorer.text) == 11
