"""Configuration: defaults < YAML < command line, and every mistake is one line naming the key."""

from __future__ import annotations

import re
import typing
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import train
from infra.device import COMPILE_REPAID_AFTER, decide_compile
from infra.errors import ConfigError
from model import GPTConfig
from training.command_line import CONFIG_DIR, config_for_resume, load_config, parse_command_line
from training.config import ARCHITECTURE_KEYS, KEYS, TrainConfig
from training.optim import lr_multiplier
from training.trainer import run_work


def from_argv(argv: list[str]):
    """What train.py does with its command line: parse it into train()'s arguments, read them."""
    return load_config(**parse_command_line(argv))


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_then_yaml_then_command_line(tmp_path):
    config_file = write_yaml(tmp_path, "batch_size: 7\nn_layer: 3\n")
    args = from_argv(["--config", config_file, "--n_layer", "5", "--learning_rate=2e-3"])
    assert args.config.batch_size == 7  # from YAML
    assert args.config.n_layer == 5  # command line beats YAML
    assert args.config.learning_rate == 2e-3  # --key=value
    assert args.config.n_embd == TrainConfig().n_embd  # default
    assert args.config.out_dir == str(Path("out") / "exp")  # out/<config name>
    assert args.settings == {"n_layer": 5, "learning_rate": 2e-3}


def test_config_is_found_by_name_in_configs_dir():
    assert from_argv(["--config", "tiny.yaml"]).config_name == "tiny"
    assert from_argv(["--config", "tiny"]).config.n_layer == 2
    assert from_argv([]).config_name == "small"  # the newcomer's default


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--compile", "false"], False),
        (["--compile", "true"], True),
        (["--compile"], True),
        (["--no-compile"], False),
        (["--no_compile"], False),
        (["--compile=yes"], True),
    ],
)
def test_booleans_accept_values_and_no_prefix(argv, expected, tmp_path):
    config_file = write_yaml(tmp_path, f"compile: {str(not expected).lower()}\n")
    assert from_argv(["--config", config_file, *argv]).config.compile is expected


@pytest.mark.parametrize("given", [["--compile", "auto"], ["--compile=null"], []])
def test_compile_is_auto_unless_given_and_auto_is_null(given, tmp_path):
    assert from_argv(["--config", "tiny", *given]).config.compile is None
    config_file = write_yaml(tmp_path, "compile: auto\n")
    assert from_argv(["--config", config_file]).config.compile is None


@pytest.mark.parametrize(
    "setting, device, work, compiled",
    [
        (None, "cpu", 10**6, False),  # auto: never on the CPU, however long the run
        (None, "mps", 10**6, False),
        (None, "cuda", COMPILE_REPAID_AFTER, True),
        (None, "cuda", COMPILE_REPAID_AFTER - 1, False),
        (True, "cpu", 1, True),  # true and false force it
        (False, "cuda", 10**6, False),
    ],
)
def test_compile_auto_compiles_on_cuda_only_when_the_run_repays_it(setting, device, work, compiled):
    chosen, reason = decide_compile(setting, torch.device(device), work)
    assert chosen is compiled
    assert reason.startswith("auto" if setting is None else "requested")


def test_a_runs_work_counts_its_steps_and_a_third_of_each_evaluation_batch(tiny_config):
    config = tiny_config(max_iters=100, eval_interval=25, eval_iters=3)
    # 100 steps; evaluations at 0, 25, 50, 75, 100, each 3 batches of each split
    assert run_work(config, start=0) == 100 + 5 * 2 * 3 / 3
    assert run_work(config, start=50) == 50 + 3 * 2 * 3 / 3  # a resumed run: what is left


def test_yaml_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # PyYAML reads `1e-3` as a string; a config should not fail on it
    config_file = write_yaml(tmp_path, "learning_rate: 1e-3\nmax_iters: 5e3\n")
    config = from_argv(["--config", config_file]).config
    assert config.learning_rate == 1e-3 and config.max_iters == 5000


def test_lr_decay_iters_null_means_max_iters(tmp_path):
    config = from_argv(["--config", write_yaml(tmp_path, "lr_decay_iters: null\n")]).config
    assert config.lr_decay_iters is None and config.decay_end == config.max_iters
    assert from_argv(["--lr_decay_iters", "none"]).config.lr_decay_iters is None


@pytest.mark.parametrize(
    "yaml_text, argv, message",
    [
        ("lerning_rate: 0.1\n", [], "unknown key 'lerning_rate' (did you mean learning_rate?)"),
        ("", ["--lerning_rate", "0.1"], "unknown option --lerning_rate (did you mean"),
        ("batch_size: twelve\n", [], "batch_size expects an integer, got 'twelve'"),
        ("batch_size: 1.5\n", [], "batch_size expects an integer"),
        ("", ["--dropout", "lots"], "dropout expects a number"),
        ("compile: maybe\n", [], "compile expects true or false"),
        ("", ["--compile", "maybe"], "compile expects true or false"),
        ("n_layer: [1\n", [], "invalid YAML at line"),
        ("- 1\n- 2\n", [], "expected a mapping"),
        ("n_embd: 130\nn_head: 4\n", [], "n_embd: must be divisible by n_head (4)"),
        ("", ["--dropout", "1.5"], "dropout: must be in [0, 1)"),
        ("", ["--min_lr_ratio", "1.5"], "min_lr_ratio: must be in [0, 1], got 1.5"),
        ("", ["--lr_schedule", "exponential"], "lr_schedule: must be one of"),
        ("", ["--device", "tpu"], "device: must be auto, cpu, cuda"),
        ("", ["--max_iters"], "argument --max_iters: expected one argument"),
        ("", ["--config"], "argument --config: expected one argument"),
        ("", ["--attn_impl", "flash"], "attn_impl: must be one of auto, sdpa, math"),
        ("", ["--lr", "1"], "unknown option --lr"),  # no abbreviations
        ("", ["stray"], "unexpected argument 'stray'"),
        ("", ["--dataset", "text"], "data_path: dataset 'text' needs a data_path"),
        ("", ["--max_iters", "50", "--warmup_iters", "100"], "max_iters: must not be less than"),
        ("", ["--muon_lr_ratio", "0"], "muon_lr_ratio: must be positive"),
        ("", ["--optimizer", "sgd"], "optimizer: must be one of"),
        ("", ["--loss_interval", "-5"], "loss_interval: must not be negative"),
    ],
)
def test_mistakes_are_one_line_errors_naming_the_key(yaml_text, argv, message, tmp_path):
    config_file = write_yaml(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        from_argv(["--config", config_file, *argv])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.e2e
def test_config_errors_exit_2_with_one_line_on_stderr(tmp_path, capsys):
    config_file = write_yaml(tmp_path, "batch_sise: 3\n")
    assert train.main(["--config", config_file]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "batch_sise" in captured.err and "did you mean batch_size" in captured.err
    assert captured.out == ""


def test_missing_config_file_lists_what_exists():
    with pytest.raises(ConfigError, match=r"not found; configs/ has: .*tiny\.yaml"):
        from_argv(["--config", "nonexistent"])


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_with_its_own_run_directory(path):
    assert from_argv(["--config", str(path)]).config.out_dir == str(Path("out") / path.stem)


def test_help_lists_every_key_with_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        from_argv(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for key in KEYS:
        assert f"--{key} " in text
    assert "--vocab_size" not in text  # taken from the data, not a key
    assert "seed for initialisation, batches and dropout [default: 1337]" in text


def invalid_candidates(name: str, tp: type) -> list:
    """Values to probe a field's check with, from its type alone."""
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
    if base is int:
        return [-1, 0, 1, 3, 130]
    if base is float:
        return [-0.5, 0.0, 0.5, 1.0, 1.5]
    if base is str:
        return ["", "bogus"]
    return []


def test_model_options_are_training_keys_that_refuse_what_the_model_refuses():
    """Walks GPTConfig's fields: each (but vocab_size, which the data sets) is a training key;
    every value the model's config refuses, the training config refuses with the same one-line
    message; every value it accepts, the training config accepts too."""
    hints = typing.get_type_hints(GPTConfig)
    refused = 0
    for f in fields(GPTConfig):
        if f.name == "vocab_size":
            assert f.name not in KEYS
            continue
        assert f.name in KEYS
        for value in invalid_candidates(f.name, hints[f.name]):
            try:
                GPTConfig(**{f.name: value})
            except ConfigError as model_error:
                with pytest.raises(ConfigError) as train_error:
                    TrainConfig(**{f.name: value})
                assert str(train_error.value) == str(model_error), (f.name, value)
                refused += 1
            else:
                TrainConfig(**{f.name: value})  # accepted by both
    assert refused >= 8  # the probes did reach the checks


def test_keys_a_resume_cannot_change_are_the_model_fields_that_shape_the_weights():
    assert set(ARCHITECTURE_KEYS) == {
        f.name for f in fields(GPTConfig) if f.name != "vocab_size"
    } - {"dropout", "attn_impl"}


def test_resume_keeps_checkpoint_config_and_applies_command_line(tmp_path):
    saved = TrainConfig(max_iters=10, warmup_iters=2, n_layer=3, out_dir="elsewhere").to_dict()
    config, _ = config_for_resume(saved, {"max_iters": 20}, tmp_path)
    assert (config.max_iters, config.n_layer, config.out_dir) == (20, 3, str(tmp_path))
    with pytest.raises(ConfigError, match="n_layer cannot change when resuming"):
        config_for_resume(saved, {"n_layer": 4}, tmp_path)
    with pytest.raises(ConfigError, match="optimizer cannot change when resuming"):
        config_for_resume(saved, {"optimizer": "muon"}, tmp_path)  # its state is AdamW's


def test_a_longer_resume_keeps_the_schedule_that_was_running_and_says_so(tmp_path):
    """A finished run at its floor, resumed with more iterations, stays on its schedule's floor
    instead of jumping back up towards the peak; an explicit lr_decay_iters is obeyed."""
    saved = TrainConfig(max_iters=100, warmup_iters=10, lr_schedule="wsd").to_dict()
    config, notes = config_for_resume(saved, {"max_iters": 400}, tmp_path)
    assert config.decay_end == 100
    assert [config.learning_rate * lr_multiplier(it, config) for it in (100, 250, 399)] == [
        pytest.approx(config.learning_rate * config.min_lr_ratio)
    ] * 3
    assert len(notes) == 1 and "keeps the learning-rate schedule" in notes[0]
    assert "--lr_decay_iters" in notes[0]
    config, notes = config_for_resume(saved, {"max_iters": 400, "lr_decay_iters": 400}, tmp_path)
    assert (
        config.decay_end == 400 and lr_multiplier(250, config) > config.min_lr_ratio and notes == []
    )
    assert config_for_resume(saved, {"max_iters": 100}, tmp_path)[1] == []  # nothing changed


def test_help_after_a_config_shows_that_runs_values(capsys):
    with pytest.raises(SystemExit):
        from_argv(["--config", "tiny.yaml", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "context length in characters [default: 32, from tiny.yaml]" in text
    assert "[default: out/tiny, from tiny.yaml]" in text
    assert "[default: 1337]" in text  # a key tiny.yaml leaves alone: the default


@pytest.mark.parametrize(
    "argv, key, value",
    [
        (["--max-iters", "7"], "max_iters", 7),
        (["--no-compile"], "compile", False),
        (["--lr-schedule=wsd"], "lr_schedule", "wsd"),
    ],
)
def test_an_option_spelt_with_dashes_is_the_option(argv, key, value):
    assert getattr(from_argv(["--config", "tiny", *argv]).config, key) == value


@pytest.mark.parametrize(
    "typo, suggestion",
    [("--lerning_rate", "(did you mean learning_rate?)"), ("--lerning-rate", "learning-rate?")],
)
def test_a_misspelt_option_is_answered_in_the_users_spelling(typo, suggestion):
    with pytest.raises(ConfigError, match=re.escape(suggestion)):
        from_argv([typo, "1e-3"])


def test_out_dir_auto_names_a_new_run_by_config_options_and_time():
    import datetime

    from training.command_line import auto_out_dir

    when = datetime.datetime(2026, 12, 4, 21, 45, 3)
    name = auto_out_dir(Path("configs/small.yaml"), {"n_head": 4, "lr_schedule": "wsd"}, when)
    assert name == str(Path("out") / "small-n_head4-lr_schedulewsd-20261204-214503")
    config = from_argv(["--config", "tiny", "--n_head", "4", "--out_dir", "auto"]).config
    assert re.fullmatch(r"out/tiny-n_head4-\d{8}-\d{6}", Path(config.out_dir).as_posix())
    with pytest.raises(ConfigError, match="names a new run"):
        from_argv(["--resume", "--out_dir", "auto"])
