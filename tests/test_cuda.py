"""The CUDA paths, on a machine with a GPU: bf16 autocast, fp16 with a gradient scaler, fused
AdamW, torch.optim.Muon, flash attention through SDPA, the KV cache, torch.compile, a resume, a
checkpoint that moves to the CPU, the exact loss against the CPU's, and torchrun with NCCL. Skipped
where there is no GPU, as in CI; on a GPU machine:

    python -m pytest tests/test_cuda.py
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pytest
import torch
from helpers import flags, run, tiny_gpt_config, torchrun
from torch.nn.attention import SDPBackend, sdpa_kernel

import evaluate
import sample
import train
from checkpoint import load_checkpoint
from infra.device import setup_runtime
from model import GPT, generate
from model.generate import one_token_step_for
from model.gpt import causal_attention_math, causal_attention_sdpa
from model.graphed import GraphedStep
from training.trainer import Trainer

DEVICE = "cuda"

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_precision_is_bf16_with_fused_adamw_and_torch_muon_and_it_learns(
    tiny_config, shakespeare
):
    runtime = setup_runtime(DEVICE, "auto")
    bf16 = torch.cuda.is_bf16_supported()
    assert runtime.dtype == (torch.bfloat16 if bf16 else torch.float16)
    trainer = Trainer(tiny_config(device=DEVICE, optimizer="muon"), runtime, shakespeare)
    adamw, muon = trainer.optimizers
    assert all(group["fused"] for group in adamw.param_groups)
    assert type(muon) is torch.optim.Muon  # its bf16 Newton-Schulz is native on GPUs
    assert trainer.scaler.is_enabled() == (not bf16)  # a gradient scaler for fp16 only
    losses = [trainer.train_step()[0].item() for _ in range(40)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert abs(losses[0] - math.log(65)) < 0.3  # about ln(65) at first
    assert sum(losses[-5:]) / 5 < losses[0] - 0.7  # 1.1 on the CPU in fp32 with MuonFP32


def test_float16_with_a_gradient_scaler_learns(tiny_config, shakespeare):
    """The path of GPUs without bf16 (dtype auto picks it there): fp16 autocast, losses scaled so
    that small gradients do not underflow, fused AdamW and Muon stepping through the scaler."""
    runtime = setup_runtime(DEVICE, "float16")
    trainer = Trainer(tiny_config(device=DEVICE, optimizer="muon"), runtime, shakespeare)
    assert trainer.scaler.is_enabled()
    losses = [trainer.train_step()[0].item() for _ in range(40)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < losses[0] - 0.7


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_attention_runs_on_flash_and_equals_the_formula(dtype):
    """The call the model makes in training (is_causal, no mask) is one flash attention takes:
    under sdpa_kernel(FLASH_ATTENTION) alone, torch raises if it cannot run it."""
    q, k, v = (torch.randn(2, 4, 64, 32, device=DEVICE) for _ in range(3))
    expected = causal_attention_math(q, k, v)  # fp32
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        observed = causal_attention_sdpa(q.to(dtype), k.to(dtype), v.to(dtype))
    torch.testing.assert_close(observed.float(), expected, atol=2e-2, rtol=0)


@pytest.mark.parametrize("pos_embedding", ["learned", "rope"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_cache_replayed_as_a_cuda_graph_gives_the_plain_paths_tokens(pos_embedding, dtype):
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(pos_embedding=pos_embedding)).to(DEVICE).eval()
    assert isinstance(one_token_step_for(model), GraphedStep)
    prompt = torch.zeros(2, 1, dtype=torch.long, device=DEVICE)

    def tokens(use_kv_cache: bool) -> torch.Tensor:
        generator = torch.Generator(device=DEVICE).manual_seed(3)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            return generate(model, prompt, 40, generator=generator, use_kv_cache=use_kv_cache)

    assert torch.equal(tokens(True), tokens(False))  # 40 > block 16: past two window jumps


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory, shakespeare_path) -> tuple[Path, str]:
    """A tiny.yaml run of 20 iterations on the GPU, shared by the tests that read its checkpoint:
    its run directory, and what train.py printed."""
    root = tmp_path_factory.mktemp("gpu_run")
    argv = flags(
        config="tiny",
        device=DEVICE,
        max_iters=20,
        inspect="false",
        data_path=shakespeare_path,
        data_dir=root / "data",
        out_dir=root / "run",
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train.main(argv) == 0
    return root / "run", printed.getvalue()


@pytest.mark.e2e
def test_checkpoint_trained_on_the_gpu_samples_on_the_cpu(gpu_run, capsys):
    run_dir, printed = gpu_run
    assert "device cuda" in printed
    argv = ["--ckpt", str(run_dir), "--device", "cpu", "--max_new_tokens", "50"]
    assert sample.main([*argv, "--prompt", "ROMEO:", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


@pytest.mark.e2e
def test_exact_loss_on_the_gpu_equals_the_cpus(gpu_run, capsys):
    """evaluate.py runs in fp32 on every device: the same checkpoint, the same number."""
    run_dir, _ = gpu_run

    def exact_loss(device: str) -> float:
        assert evaluate.main(["--ckpt", str(run_dir), "--device", device]) == 0
        return float(capsys.readouterr().out.split("loss")[1].split()[0])

    assert exact_loss(DEVICE) == pytest.approx(exact_loss("cpu"), abs=1e-4)


@pytest.mark.e2e
def test_resume_continues_the_same_run(tiny_argv, tmp_path):
    """Stopped at 10 and resumed to 20, with dropout on (CUDA's random state is in the
    checkpoint). fp32, so that only the GPU's order of summation can differ from one go."""
    fp32 = ("--device", DEVICE, "--dtype", "float32", "--dropout", "0.1", "--lr_decay_iters", "20")
    assert train.main(tiny_argv(*fp32, "--max_iters", "20", out="straight")) == 0
    assert train.main(tiny_argv(*fp32, "--max_iters", "10", out="resumed")) == 0
    # the command line goes on top of the checkpoint's config, and tiny_argv's says --device cpu
    assert train.main(tiny_argv("--resume", *fp32, "--max_iters", "20", out="resumed")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["iter_num"] == resumed["iter_num"] == 20
    for name, weight in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], weight, atol=1e-4, rtol=0, msg=name)


@pytest.mark.e2e
def test_compiled_model_trains_and_its_checkpoint_holds_plain_weights(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv("--device", DEVICE, "--compile", "--max_iters", "20")) == 0
    assert ", compiled (requested)" in capsys.readouterr().out
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not any(name.startswith("_orig_mod") for name in checkpoint["model"])
    assert checkpoint["best_val_loss"] < 3.7  # learnt something: ln(65) is 4.17


@pytest.mark.e2e
def test_compile_auto_leaves_a_short_run_eager_on_cuda(tiny_argv, capsys):
    assert train.main(tiny_argv("--device", DEVICE, "--max_iters", "20")) == 0
    assert ", eager (auto: a run of ~" in capsys.readouterr().out


@pytest.mark.e2e
def test_torchrun_on_one_gpu_with_nccl(tiny_argv, tmp_path):
    argv = [*torchrun(1), "train.py", *tiny_argv("--device", DEVICE, "--max_iters", "20")]
    result = run(argv, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "device cuda:0" in result.stdout and "done:" in result.stdout
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["iter_num"] == 20 and len(checkpoint["rng"]) == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_stacked_sweep_on_the_gpu_trains_each_variant_as_it_would_alone(
    tmp_path, shakespeare_path, shakespeare, dtype
):
    """Three variants as one stack through the fused attention kernels' batching rules, under
    autocast (fp16: a gradient scaler each): 50 steps within the precision's reach of each
    variant trained alone."""
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    base = dict(config="tiny", device=DEVICE, dtype=dtype, max_iters=50, eval_interval=50,
                log_interval=1, loss_interval=0, inspect=False, tensorboard=False,
                exact_max_chars=2000, data_path=str(shakespeare_path),
                data_dir=str(shakespeare.data_dir))  # fmt: skip
    variants = [dict(seed=s, learning_rate=lr) for s, lr in ((1, 1e-3), (2, 3e-3), (3, 2e-3))]
    alone = [
        train.train(**base, **v, out_dir=str(tmp_path / f"a{i}")) for i, v in enumerate(variants)
    ]
    from training.command_line import load_config

    requests = [
        load_config(**base, **v, out_dir=str(tmp_path / f"s{i}")) for i, v in enumerate(variants)
    ]
    stacked = train.train_together(requests, (), stacked=True)
    for a, s in zip(alone, stacked, strict=True):
        losses = [[p["batch_loss"] for p in r.history if "batch_loss" in p] for r in (a, s)]
        torch.testing.assert_close(losses[0], losses[1], atol=5e-2, rtol=0)
        assert abs(a.best_val_loss - s.best_val_loss) < 5e-2
