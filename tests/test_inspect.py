"""Seeing inside a trained model through the commands: what TensorBoard (its own reader, and the
real page in Chromium), evaluate.py and sample.py show of a tiny run."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from helpers import scalar_points, tensorboard_runs
from tensorboard.plugins.custom_scalar.layout_pb2 import Layout
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

import evaluate
import sample
import train
from viz.figures import visible


@pytest.fixture(scope="module")
def inspected_run(tmp_path_factory, shakespeare_path):
    """A tiny run with the views inside the model on (conftest's tiny_run has them off) and a
    probe text of its own, as TensorBoard, evaluate.py and sample.py see it."""
    root = tmp_path_factory.mktemp("inspect")
    argv = [
        "--config", "tiny", "--device", "cpu", "--data_path", str(shakespeare_path),
        "--data_dir", str(root / "data"), "--out_dir", str(root / "run"),
        "--max_iters", "40", "--probe_text", "ROMEO:\nO, she doth teach",
        "--extras_budget", "1",  # the views at every evaluation, whatever they cost
    ]  # fmt: skip
    assert train.main(argv) == 0
    return root / "run"


def test_past_their_budget_the_sample_and_views_skip_evaluations_and_say_so(tiny_argv, capsys):
    """The first evaluation with extras has them (nothing spent yet); after it, their time is
    above a budget of 1e-9 of the run's, so every later one estimates the losses alone."""
    argv = tiny_argv("--max_iters", "40", "--eval_interval", "10", "--inspect", "--tensorboard",
                     "--sample_chars", "20", "--extras_budget", "1e-9")  # fmt: skip
    assert train.main(argv) == 0
    assert "the sample and the views skip evaluations: extras_budget" in capsys.readouterr().out
    out_dir = Path(argv[argv.index("--out_dir") + 1])
    main = tensorboard_runs(out_dir).GetAccumulator(".")
    assert [image.step for image in main.Tensors("self_attention/layer_0")] == [10]
    assert [text.step for text in main.Tensors("sample/text_summary")] == [10]
    assert list(scalar_points(out_dir, "loss/val")) == [0, 10, 20, 30, 40]  # losses at every one


@pytest.mark.e2e
def test_tensorboard_shows_attention_histograms_and_the_losses_as_one_run(inspected_run):
    runs = tensorboard_runs(inspected_run)
    assert sorted(runs.Runs()) == ["."]  # one entry of the run list: one colour per run
    main = runs.GetAccumulator(".")
    assert {"self_attention/layer_0", "self_attention/layer_1"} <= set(
        main.PluginTagToContent("images")
    )
    image = main.Tensors("self_attention/layer_0")[-1]
    assert image.step == 40 and image.tensor_proto.string_val[2].startswith(b"\x89PNG")
    histograms = main.PluginTagToContent("histograms")
    assert "weights/values/transformer.h.1.attn.c_attn.weight" in histograms
    grads = main.Tensors("weights/gradients/transformer.h.1.attn.c_attn.weight")
    assert [g.step for g in grads] == [20, 40]  # the last update's gradients; none before any

    def points(tag: str) -> dict[int, float]:
        return scalar_points(inspected_run, tag)

    assert list(points("loss/train")) == list(points("loss/val")) == [0, 10, 20, 30, 40]
    assert list(points("loss/train_batch")) == [10, 20, 30, 40]
    exact = points("loss/val_exact")
    assert list(exact) == [40] and abs(exact[40] - points("loss/val")[40]) < 0.15
    # CUSTOM SCALARS: one chart draws the run's three losses, and nothing else
    chart = main.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    pattern = Layout.FromString(chart).category[0].chart[0].multiline.tag
    matched = [t for t in main.Tags()["tensors"] if any(re.search(p, t) for p in pattern)]
    assert sorted(matched) == ["loss/train", "loss/val", "loss/val_exact"]


@pytest.mark.e2e
def test_the_loss_section_comes_first_and_every_scalar_has_a_description(inspected_run):
    runs = tensorboard_runs(inspected_run)
    sections = set()
    for run in runs.Runs():
        for tag in runs.GetAccumulator(run).Tags()["tensors"]:
            metadata = runs.SummaryMetadata(run, tag)
            if metadata.plugin_data.plugin_name in ("scalars", "images", "histograms"):
                sections.add(tag.split("/")[0])  # what TIME SERIES shows, by section
            if metadata.plugin_data.plugin_name == "scalars":
                assert len(metadata.summary_description) > 20, (run, tag)
    # TIME SERIES lays out sections in the order of their names' characters
    assert sorted(sections)[0] == "loss" and "optimizer" in sections, sorted(sections)


@pytest.mark.e2e
def test_hparams_compare_runs_by_their_losses(inspected_run):
    main = tensorboard_runs(inspected_run).GetAccumulator(".")
    content = main.SummaryMetadata("_hparams_/experiment").plugin_data.content
    metrics = HParamsPluginData.FromString(content).experiment.metric_infos
    assert [m.name.tag for m in metrics] == ["loss/val", "loss/val_exact", "loss/train"]
    assert all(tag in main.Tags()["tensors"] for tag in [m.name.tag for m in metrics])


@pytest.mark.e2e
def test_projector_opens_on_the_latest_embedding_with_one_label_per_character(inspected_run):
    config = text_format.Parse(
        (inspected_run / "projector_config.pbtxt").read_text(), ProjectorConfig()
    )
    names = [e.tensor_name for e in config.embeddings]
    assert len(names) == 2  # iterations 40 and 20: none of the random start
    assert sorted(names)[0] == names[0] == "embedding, latest (iteration 40)"
    latest = config.embeddings[0]
    labels = (inspected_run / latest.metadata_path).read_text(encoding="utf-8").split("\n")[:-1]
    checkpoint = evaluate.load_checkpoint(inspected_run / "last.pt")
    assert labels == [visible(c) for c in checkpoint["vocab"]] and labels[:2] == ["↵", "␣"]
    rows = (inspected_run / latest.tensor_path).read_text().strip().split("\n")
    written = torch.tensor([[float(x) for x in row.split("\t")] for row in rows])
    wte = checkpoint["model"]["transformer.wte.weight"].float()
    assert written.shape == (65, 32) and torch.allclose(written, wte, rtol=1e-5, atol=1e-7)


@pytest.mark.e2e
def test_evaluate_prints_the_exact_loss_beside_the_trainers_estimate(
    inspected_run, shakespeare_path, shakespeare, capsys
):
    data = ["--data_path", str(shakespeare_path), "--data_dir", str(shakespeare.data_dir)]
    assert evaluate.main(["--ckpt", str(inspected_run), "--device", "cpu", *data]) == 0
    out = capsys.readouterr().out
    assert "the val split: 111,539 characters scored" in out
    nats = float(out.split("loss")[1].split()[0])
    bits = float(out.split("bits")[1].split()[0])
    assert bits == pytest.approx(nats / math.log(2), abs=1e-3)
    assert "the trainer's estimate at iteration 40: val loss" in out


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv, code, message",
    [
        (("--stride", "17"), 2, "--stride must be between 1 and block_size / 2 = 16"),
        (("--split", "test"), 2, "split: must be one of train, val"),
        (("--text_file", "/no/such.txt"), 2, "--text_file /no/such.txt does not exist"),
    ],
)
def test_evaluate_mistakes_are_one_line(inspected_run, capsys, argv, code, message):
    assert evaluate.main(["--ckpt", str(inspected_run), *argv]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.e2e
def test_evaluate_refuses_a_text_with_unknown_characters_and_a_damaged_checkpoint(
    inspected_run, tmp_path, capsys
):
    text = tmp_path / "text.txt"
    text.write_text("Zoë’s text", encoding="utf-8")
    assert evaluate.main(["--ckpt", str(inspected_run), "--text_file", str(text)]) == 1
    assert "'ë', '’' not in the vocabulary" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes((inspected_run / "last.pt").read_bytes()[:3000])
    assert evaluate.main(["--ckpt", str(broken)]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


@pytest.mark.e2e
def test_sample_draws_the_prompts_attention_into_a_png(inspected_run, tmp_path, capsys):
    png = tmp_path / "attention.png"
    argv = ["--ckpt", str(inspected_run), "--prompt", "ROMEO:", "--attention", str(png)]
    assert sample.main([*argv, "--max_new_tokens", "0"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert f"wrote {png}" in capsys.readouterr().err


@pytest.mark.e2e
def test_a_probe_with_unknown_characters_is_a_config_error_before_training(tiny_argv, capsys):
    assert train.main(tiny_argv("--probe_text", "Ça va")) == 2
    err = capsys.readouterr().err
    assert "probe_text: 'Ç' not in the vocabulary" in err and err.count("\n") == 1


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium installed")
def test_tensorboard_itself_opens_on_the_loss_charts_with_one_entry_per_run(
    inspected_run, tmp_path
):
    """TensorBoard serving two runs, its landing page (TIME SERIES) in headless Chromium: the
    first section is `loss`, its first chart the training loss, and each run is one entry of
    the run list (one colour on every chart)."""
    playwright = pytest.importorskip("playwright.sync_api")
    from make_screenshots import serve_tensorboard

    for name in ("first", "second"):
        shutil.copytree(inspected_run, tmp_path / name)
    with serve_tensorboard(tmp_path) as address, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{address}/?forceSVG=true")
        page.wait_for_selector("card-view", timeout=60_000)
        sections = page.eval_on_selector_all(".group-title", "s => s.map(e => e.textContent)")
        assert [s.strip() for s in sections[:3]] == ["Pinned", "loss", "optimizer"]
        first = page.locator("card-view").first
        first.locator("text=second").first.wait_for(timeout=30_000)  # the data table's rows
        text = first.inner_text()
        assert text.split("\n")[:2] == ["loss", "/train"], text[:80]
        runs = page.eval_on_selector_all(
            "runs-selector tb-data-table-content-row", "rows => rows.map(r => r.textContent)"
        )
        assert len(runs) == 2 and "first" in runs[0] and "second" in runs[1], runs
        browser.close()
