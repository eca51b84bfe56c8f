"""The documents hold what the code does: tables rendered from records/, the README's Python
example run against a real checkpoint, the README within its length, its commands' flags real."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import render_docs
import torch
from helpers import ROOT

import records

README = ROOT / "README.md"


def test_every_table_in_the_documents_is_what_the_records_give():
    stale = render_docs.stale_documents()
    assert stale == [], f"run python docs/tools/render_docs.py: {stale} differ from records/"


def test_a_changed_record_changes_the_rendered_table(tmp_path, monkeypatch):
    """The check above can fail: one figure changed in a copy of the records changes a table."""
    copy = tmp_path / "records"
    shutil.copytree(ROOT / "records", copy)
    monkeypatch.setattr(records, "RECORDS_DIR", copy)
    text = (ROOT / "docs" / "performance.md").read_text()
    before = render_docs.render(text, records.read_records(), "../")
    path = sorted(copy.glob("*sample_cli_speed*avx2*.json"))[-1]  # the newest: the one shown
    record = json.loads(path.read_text())
    for pair in record["pairs"]:
        pair["cached_chars_per_sec"] += 1000
    path.write_text(json.dumps(record))
    after = render_docs.render(text, records.read_records(), "../")
    assert before == text and after != text


def test_every_record_is_from_a_machine_the_tables_have_a_place_for():
    """benchmarks/recording.py writes the machine's kind; the tables read it: the two agree."""
    for record in records.read_records():
        machine = record["machine"]
        assert machine["kind"] in records.CPU_KINDS or machine["kind"] == machine["gpu"], record


def test_the_readme_is_a_short_guide_without_a_diary():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for diary_word in ("session", "sitting", "was asked", "aims"):
        assert diary_word not in text.lower(), diary_word
    outside_links = re.sub(r"\[[^]]*\]\([^)]*\)", "", text)  # records are linked by commit
    assert not re.search(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", outside_links)


def python_example() -> str:
    """The README's Python block after the line `<!-- tested: tests/test_docs.py -->`."""
    text = README.read_text()
    match = re.search(r"<!-- tested: tests/test_docs.py -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README's Python example is marked for this test"
    return match.group(1)


@pytest.mark.e2e
def test_the_readmes_python_example_runs_on_a_real_checkpoint(tiny_run):
    namespace: dict = {}
    code = python_example().replace('"out/small"', repr(str(tiny_run)))
    exec(compile(code, "README.md", "exec"), namespace)
    model, tokenizer, idx = namespace["model"], namespace["tokenizer"], namespace["idx"]
    logits = namespace["logits"]
    assert logits.shape == (1, idx.size(1), tokenizer.vocab_size)
    assert torch.allclose(namespace["probs"].sum(), torch.tensor(1.0))
    assert namespace["text"].startswith(tokenizer.decode(idx[0].tolist()))
    maps = namespace["maps"]
    assert len(maps) == model.config.n_layer
    for weights in maps:  # (1, n_head, T, T): each row a distribution over the past
        T = idx.size(1)
        assert weights.shape == (1, model.config.n_head, T, T)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, model.config.n_head, T))
        assert torch.all(weights.triu(diagonal=1) == 0)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["last.pt", None])
def test_load_model_takes_a_checkpoint_file_or_a_run_directory(tiny_run, name):
    from checkpoint import load_checkpoint, load_model

    path = tiny_run / name if name else tiny_run
    model, tokenizer = load_model(path)
    saved = load_checkpoint(tiny_run / (name or "best.pt"))
    assert tokenizer.chars == saved["vocab"] and not model.training
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["model"][key]), key


def test_docs_tensorboard_describes_every_scalar_the_trainer_writes():
    from training.logger import METRICS

    page = (ROOT / "docs" / "tensorboard.md").read_text()
    first_cells = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    for metric in METRICS.values():  # a row per tag: "| `loss/val` | ..."
        assert any(cell.split()[0] == f"`{metric.tag}`" for cell in first_cells), metric


DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_picture_a_document_shows_is_there(path):
    text = path.read_text()
    markdown = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text)
    for picture in markdown + re.findall(r'<img src="([^"]+)"', text):
        assert (path.parent / picture).is_file(), picture
