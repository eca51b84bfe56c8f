"""Sweeps: a grid of variants of one config, each an ordinary run, trained one after another or as
one stack (one step for all of them through torch.func over the one model); each stacked variant
computes what it would alone, and stops, saves and resumes as a run does."""

from __future__ import annotations

import csv
import os
import signal

import pytest
import torch
from helpers import ROOT, tensorboard_runs

import evaluate
import sample
import train
from checkpoint import load_checkpoint
from training.command_line import load_config
from viz import LivePlot

pytestmark = pytest.mark.e2e

# 20 iterations of tiny.yaml, logged at every step; the exact loss over the first 2,000
# characters. attn_impl auto: SDPA alone in fp32, the formula in a stack (which vmap batches)
BASE = dict(config="tiny", device="cpu", max_iters=20, eval_interval=10, log_interval=1,
            loss_interval=0, inspect=False, tensorboard=False, exact_max_chars=2000,
            attn_impl="auto")  # fmt: skip
# three variants that differ in everything a stack lets them differ in
VARIANTS = [
    dict(seed=1, learning_rate=1e-3, weight_decay=0.1, warmup_iters=5),
    dict(seed=2, learning_rate=3e-3, weight_decay=0.0, warmup_iters=0),
    dict(seed=3, learning_rate=2e-3, weight_decay=0.3, warmup_iters=10, grad_clip=0.5),
]


def settings(folder, data, **more) -> dict:
    paths = dict(data_path=str(data[0]), data_dir=str(data[1].data_dir))
    return {**BASE, **paths, "out_dir": str(folder), **more}


def batch_losses(run) -> list[float]:
    return [point["batch_loss"] for point in run.history if "batch_loss" in point]


def assert_trained_alike(a, b, weights_atol: float) -> None:
    """The same per-step losses (to fp32 rounding) and final weights: a batched matrix product
    sums in another order, and Muon's Newton-Schulz iteration magnifies that a little."""
    torch.testing.assert_close(batch_losses(a), batch_losses(b), atol=1e-5, rtol=1e-5)
    for name, tensor in a.model.state_dict().items():
        other = b.model.state_dict()[name]
        torch.testing.assert_close(tensor, other, atol=weights_atol, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def data(shakespeare_path, shakespeare):
    return shakespeare_path, shakespeare


@pytest.fixture(scope="module", params=["adamw", "muon"])
def alone_and_stacked(request, tmp_path_factory, data):
    """The three variants trained alone, and as one stack, with each optimizer."""
    root, optimizer = tmp_path_factory.mktemp(request.param), request.param
    alone = [
        train.train(**settings(root / f"alone{i}", data, optimizer=optimizer, **v))
        for i, v in enumerate(VARIANTS)
    ]
    requests = [
        load_config(**settings(root / f"stacked{i}", data, optimizer=optimizer, **v))
        for i, v in enumerate(VARIANTS)
    ]
    stacked = train.train_together(requests, (), stacked=True, stop_alone=True)
    return optimizer, alone, stacked, requests


def test_each_stacked_variant_trains_as_it_would_alone(alone_and_stacked):
    optimizer, alone, stacked, _ = alone_and_stacked
    for a, s in zip(alone, stacked, strict=True):
        assert s.iter_num == 20 and s.stopped is None
        assert_trained_alike(a, s, 1e-5 if optimizer == "adamw" else 3e-4)
        assert s.best_val_loss == pytest.approx(a.best_val_loss, abs=1e-4)


def test_a_stack_of_one_equals_a_plain_run(alone_and_stacked, tmp_path, data):
    optimizer, alone, _, _ = alone_and_stacked
    request = load_config(**settings(tmp_path / "one", data, optimizer=optimizer, **VARIANTS[1]))
    (one,) = train.train_together([request], (), stacked=True)
    assert_trained_alike(alone[1], one, 1e-5 if optimizer == "adamw" else 3e-4)


def test_reordering_a_stacks_variants_changes_none_of_them(alone_and_stacked, tmp_path):
    _, _, stacked, requests = alone_and_stacked
    moved = [requests[2], requests[0], requests[1]]
    moved = [
        load_config(**{**r.config.to_dict(), "out_dir": str(tmp_path / str(i))})
        for i, r in enumerate(moved)
    ]
    reordered = train.train_together(moved, (), stacked=True)
    for a, b in zip([stacked[2], stacked[0], stacked[1]], reordered, strict=True):
        assert_trained_alike(a, b, 1e-6)


def test_a_variant_driven_to_nan_stops_alone_and_the_others_are_unchanged(
    alone_and_stacked, tmp_path, capsys
):
    _, _, stacked, requests = alone_and_stacked
    fresh = [
        load_config(**{**r.config.to_dict(), "out_dir": str(tmp_path / str(i))})
        for i, r in enumerate(requests)
    ]

    def poison_the_second(step: train.Step) -> None:
        if step.step == 12 and step.run.out_dir == tmp_path / "1":
            with torch.no_grad():
                step.model.transformer.wte.weight.fill_(float("nan"))

    runs = train.train_together(fresh, [poison_the_second], stacked=True, stop_alone=True)
    assert runs[1].stopped.startswith("non-finite loss") and "iteration 13" in runs[1].stopped
    assert "[1] stopped alone" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "1" / "last.pt")["iter_num"] == 10  # the last good one
    for i in (0, 2):
        assert runs[i].iter_num == 20 and runs[i].stopped is None
        assert_trained_alike(stacked[i], runs[i], 1e-6)


def test_a_sweep_from_the_command_line_gives_each_variant_a_run_and_a_table(tmp_path, data, capsys):
    shakespeare_path, shakespeare = data
    out = tmp_path / "sweep"
    argv = [f"--{k}={v}" for k, v in settings(out, data, tensorboard=True).items()]
    argv += ["--sweep", "learning_rate=1e-3,3e-3", "--sweep", "seed=1,2", "--stack", "true"]
    assert train.main(argv) == 0
    names = ["learning_rate=0.001,seed=1", "learning_rate=0.001,seed=2",
             "learning_rate=0.003,seed=1", "learning_rate=0.003,seed=2"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name[0] != ".") == names
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["best_val"]) for r in rows] == sorted(float(r["best_val"]) for r in rows)
    for row in rows:
        run_dir = out / f"learning_rate={float(row['learning_rate']):g},seed={row['seed']}"
        best = load_checkpoint(run_dir / "best.pt")
        assert float(row["best_val"]) == pytest.approx(best["best_val_loss"], abs=1e-4)
        assert int(row["best_iter"]) == best["iter_num"] and row["stopped"] == ""
        assert best["config"]["learning_rate"] == float(row["learning_rate"])
    assert (out / "results.md").read_text().count("\n") == 2 + 4
    # TensorBoard: a run per variant, whose HPARAMS compare them by the keys the sweep varies
    runs = tensorboard_runs(out)
    assert sorted(runs.Runs()) == names
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = runs.GetAccumulator(names[0]).SummaryMetadata("_hparams_/session_start_info")
    session = HParamsPluginData.FromString(content.plugin_data.content).session_start_info
    assert set(session.hparams) == {"learning_rate", "seed"}
    # a variant is a run like any other: it samples, evaluates and resumes
    variant, paths = out / names[3], ["--data_path", str(shakespeare_path)]
    assert sample.main(["--ckpt", str(variant), "--max_new_tokens", "20"]) == 0
    assert (
        evaluate.main(["--ckpt", str(variant), *paths, "--data_dir", str(shakespeare.data_dir)])
        == 0
    )
    capsys.readouterr()
    resumed = train.train(resume=variant, max_iters=25, data_dir=str(shakespeare.data_dir),
                          data_path=str(shakespeare_path))  # fmt: skip
    assert resumed.iter_num == 25


def test_a_sweep_stopped_by_a_signal_resumes_exactly(tmp_path, data):
    grid = dict(learning_rate=[1e-3, 3e-3], stack=True)
    straight = train.sweep(**settings(tmp_path / "straight", data, **grid))

    def interrupt_at_7(step: train.Step) -> None:
        if step.step == 7 and step.run.config.learning_rate == 1e-3:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = train.sweep(**settings(tmp_path / "stopped", data, **grid), hooks=[interrupt_at_7])
    assert [run.stopped for run in stopped.runs] == ["SIGINT", "SIGINT"]
    assert [run.iter_num for run in stopped.runs] == [7, 7]  # the stack stops together
    resumed = train.sweep(resume=tmp_path / "stopped", data_path=str(data[0]),
                          data_dir=str(data[1].data_dir))  # fmt: skip
    for a, b in zip(straight.runs, resumed.runs, strict=True):
        assert b.iter_num == 20
        for name, tensor in a.model.state_dict().items():
            assert torch.equal(tensor, b.model.state_dict()[name]), name


def test_a_config_files_sweep_is_a_sweep_one_variant_after_another(tmp_path, data):
    config = tmp_path / "grid.yaml"
    tiny = (ROOT / "configs" / "tiny.yaml").read_text()
    config.write_text(tiny + "sweep:\n  n_head: [1, 2]\n")
    plot = LivePlot(every=5, path=tmp_path / "curves.png")
    given = {**settings(tmp_path / "grid", data), "max_iters": 10, "stack": False}
    del given["config"]
    done = train.sweep(config, hooks=[plot], **given)
    assert [run.config.n_head for run in done.runs] == [1, 2]
    assert sorted(row["n_head"] for row in done.rows) == [1, 2]
    assert len(plot.runs) == 2  # the hook saw both variants
    assert "n_head" in repr(done) and (tmp_path / "grid" / "results.md").is_file()


def test_under_torchrun_the_processes_share_out_the_variants(tmp_path, data):
    """Two real processes, two variants: each trains one alone (no process group, no gradient
    crossing), and the table holds both."""
    from helpers import run, torchrun

    out = tmp_path / "shared"
    argv = [f"--{k}={v}" for k, v in settings(out, data, max_iters=10).items()]
    result = run([*torchrun(2), "train.py", *argv, "--sweep", "seed=1,2", "--stack", "false"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: 10 iterations") == 2  # one in each process
    with open(out / "results.csv") as f:
        assert sorted(row["seed"] for row in csv.DictReader(f)) == ["1", "2"]
    for seed in (1, 2):
        assert load_checkpoint(out / f"seed={seed}" / "last.pt")["iter_num"] == 10
