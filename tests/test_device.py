"""Device and precision policy: what `auto` picks, and why, with the hardware answered both ways."""

from __future__ import annotations

import pytest
import torch

import infra.device as device_policy
from infra.device import explain_dtype, resolve_dtype
from training.command_line import CONFIG_DIR, load_config

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_is_bf16_only_where_bf16_is_native(monkeypatch, native):
    monkeypatch.setattr(device_policy, "cpu_has_native_bf16", lambda: native)
    dtype = resolve_dtype("auto", CPU)
    assert dtype == (torch.bfloat16 if native else torch.float32)
    reason = explain_dtype("auto", CPU, dtype)
    assert reason.startswith("auto: this CPU (")
    assert ("has native bf16" in reason) == native and ("no native bf16" in reason) != native


@pytest.mark.parametrize("native", [True, False])
def test_asking_for_bf16_is_obeyed_and_warned_about_only_where_it_is_emulated(monkeypatch, native):
    monkeypatch.setattr(device_policy, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16
    assert ("warning" in explain_dtype("bfloat16", CPU, torch.bfloat16)) != native
    assert "warning" not in explain_dtype("float32", CPU, torch.float32)


@pytest.mark.e2e
def test_the_start_up_line_says_which_precision_and_why(monkeypatch, tiny_argv, capsys):
    import train

    monkeypatch.setattr(device_policy, "cpu_has_native_bf16", lambda: False)
    assert train.main(tiny_argv("--max_iters", "10", "--dtype", "auto")) == 0
    assert "float32, no autocast (auto: this CPU (" in capsys.readouterr().out


def test_the_start_up_line_says_which_attention_kernel_ran_and_why(tiny_argv, capsys):
    import train

    argv = ("--max_iters", "10", "--attn_impl", "auto", "--dtype", "float32")
    assert train.main(tiny_argv(*argv)) == 0
    assert "attention sdpa (auto: the faster in float32 on the CPUs measured" in (
        capsys.readouterr().out
    )
    argv = ("--max_iters", "10", "--dtype", "bfloat16", "--overwrite")
    assert train.main(tiny_argv(*argv)) == 0
    assert "attention math (auto: the faster in bfloat16 on the CPUs measured" in (
        capsys.readouterr().out
    )
    assert train.main(tiny_argv("--max_iters", "10", "--attn_impl", "sdpa", "--overwrite")) == 0
    assert "attention sdpa (as set)" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_no_shipped_config_forces_a_precision_that_is_emulated_on_common_cpus(path):
    assert load_config(path).config.dtype in ("auto", "float32")
