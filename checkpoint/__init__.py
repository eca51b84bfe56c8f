"""The checkpoint: what it holds, its file names, its one writer and its one reader.

It holds only primitives, tensors and state dicts, so the reader needs no more than
`torch.load(..., weights_only=True)`; the writer is atomic (`infra.files.write_atomic`). The reader
upgrades every older layout to the current one (`upgrade`) and checks every field, so nothing above
it needs a branch for an old or a foreign checkpoint. It also rebuilds the model and tokenizer."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, TypedDict

import torch

from data import CharTokenizer
from infra.device import check_fits
from infra.errors import CheckpointError, ConfigError, first_line
from infra.files import TEMPORARY_SUFFIX, write_atomic
from model import GPT, GPTConfig
from model.config import parameter_count

# 2: the optimizers are a list (AdamW, then Muon when used) and eval_losses is always present.
# 3: the config's floor and Muon's rate are ratios of learning_rate (min_lr_ratio, muon_lr_ratio).
CHECKPOINT_VERSION = 3
LAST = "last.pt"  # written at every evaluation: where a resume continues
BEST = "best.pt"  # written when the validation loss improved: what sampling reads by default


class Checkpoint(TypedDict):
    """Everything a run needs to continue exactly, and a reader needs to rebuild the model."""

    format_version: int  # CHECKPOINT_VERSION when written
    model: dict[str, torch.Tensor]  # the GPT's state dict (GPT-2 names)
    model_args: dict[str, Any]  # GPTConfig's fields
    optimizer: list[dict[str, Any]]  # each optimizer's state dict, in build order
    scaler: dict[str, Any]  # the fp16 gradient scaler's state (empty when off)
    iter_num: int  # optimizer steps taken
    best_val_loss: float  # the lowest validation estimate so far
    eval_losses: dict[str, float]  # the latest evaluation: {"iter", "train", "val"}, or {}
    config: dict[str, Any]  # the run's resolved TrainConfig, as its keys
    vocab: list[str]  # the tokenizer's characters, in id order
    rng: list[dict[str, torch.Tensor | None]]  # every rank's random streams, in rank order


FIELDS = tuple(Checkpoint.__annotations__)


def new_checkpoint(**fields: Any) -> Checkpoint:
    """A checkpoint of the current layout; every field named, none missing or unknown."""
    fields = {"format_version": CHECKPOINT_VERSION, **fields}
    if set(fields) != set(FIELDS):
        missing, extra = set(FIELDS) - set(fields), set(fields) - set(FIELDS)
        raise TypeError(f"checkpoint fields: missing {sorted(missing)}, unknown {sorted(extra)}")
    return Checkpoint(**fields)


def upgrade(raw: dict[str, Any]) -> Checkpoint:
    """A checkpoint of any layout this code accepts, as the current one (see CHECKPOINT_VERSION)."""
    checkpoint = dict(raw)
    if checkpoint["format_version"] == 1:
        if isinstance(checkpoint["optimizer"], dict):
            checkpoint["optimizer"] = [checkpoint["optimizer"]]
        checkpoint.setdefault("eval_losses", {})
        checkpoint.setdefault("scaler", {})
    config = checkpoint.get("config")
    if checkpoint["format_version"] < 3 and isinstance(config, dict):
        peak, config = config.get("learning_rate"), dict(config)
        for old, new in (("min_lr", "min_lr_ratio"), ("muon_lr", "muon_lr_ratio")):
            if isinstance(config.get(old), float) and isinstance(peak, float) and peak > 0:
                config[new] = config.pop(old) / peak
        checkpoint["config"] = config
    checkpoint["format_version"] = CHECKPOINT_VERSION
    missing = [key for key in FIELDS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"a checkpoint without {', '.join(missing)}: not one of train.py's")
    return Checkpoint(**{key: checkpoint[key] for key in FIELDS})


REQUIRED_KEYS = ("format_version", "model", "model_args", "config", "vocab", "iter_num")


def save_checkpoint(checkpoint: dict[str, Any], *paths: Path) -> None:
    """The one writer: serialize once and write atomically to each path, in order."""
    payload = io.BytesIO()
    torch.save({**checkpoint, "format_version": CHECKPOINT_VERSION}, payload)
    for path in paths:
        write_atomic(path, lambda tmp: tmp.write_bytes(payload.getbuffer()))


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files that a writer killed mid-write (SIGKILL, the OOM killer) left
    in run_dir. Call it only while holding the run's lock: then no live writer owns them."""
    for path in run_dir.glob(f".*.pt.*{TEMPORARY_SUFFIX}"):
        path.unlink(missing_ok=True)


def resolve_checkpoint_path(path: str | Path, names: tuple[str, ...] = (BEST, LAST)) -> Path:
    """A checkpoint file, or a run directory: the first of its `names` that exists (for sampling,
    best.pt falling back to last.pt; for resuming, last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no checkpoint (no {' or '.join(names)})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """The one reader: a checkpoint file, or a run directory's (its best.pt, else last.pt), read
    with weights_only=True and upgraded; anything wrong is a one-line CheckpointError."""
    path = resolve_checkpoint_path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file; all mean the same here
        reason = first_line(e, 160).split(". ")[0]
        raise CheckpointError(f"cannot read checkpoint {path}: damaged, or not a PyTorch "
                              f"checkpoint ({reason})") from None  # fmt: skip
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a checkpoint written by this project's train.py")
    version = checkpoint["format_version"]
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: format_version is {version!r}, not a format number")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}; this code reads up to "
                              f"{CHECKPOINT_VERSION}: update the code")  # fmt: skip
    return check_fields(upgrade(checkpoint), path)


def check_fields(checkpoint: Checkpoint, path: Path) -> Checkpoint:
    """checkpoint, once every field has the type and shape the code relies on; else a one-line
    CheckpointError naming the field. A checkpoint is data from anywhere: nothing in it is used
    before it is checked here (the model's shape by GPTConfig, its weights by load_weights)."""
    model, args, vocab = checkpoint["model"], checkpoint["model_args"], checkpoint["vocab"]
    best, steps = checkpoint["best_val_loss"], checkpoint["iter_num"]
    checks = (
        ("model", isinstance(model, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()),
         "a state dict of named tensors"),
        ("model_args", isinstance(args, dict) and all(isinstance(k, str) for k in args),
         "a mapping of GPTConfig's fields"),
        ("vocab", isinstance(vocab, list) and all(isinstance(c, str) and len(c) == 1 for c in vocab)
         and len(set(vocab)) == len(vocab), "a list of distinct characters"),
        ("config", isinstance(checkpoint["config"], dict), "a mapping of training keys"),
        ("iter_num", type(steps) is int and steps >= 0, "a count of steps"),
        ("best_val_loss", isinstance(best, int | float) and not isinstance(best, bool), "a number"),
        ("eval_losses", isinstance(checkpoint["eval_losses"], dict), "a mapping"),
        ("optimizer", isinstance(checkpoint["optimizer"], list), "a list of state dicts"),
        ("scaler", isinstance(checkpoint["scaler"], dict), "a mapping"),
        ("rng", isinstance(checkpoint["rng"], list), "a list of random states"),
    )  # fmt: skip
    for field, ok, what in checks:
        if not ok:
            shown = repr(checkpoint[field])[:80]  # type: ignore[literal-required]
            raise CheckpointError(f"{path}: {field} must be {what}, got {shown}: not a checkpoint "
                                  "this code can use")  # fmt: skip
    return checkpoint


def restore_model(
    checkpoint: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[GPT, CharTokenizer]:
    """The model (in eval mode, on device) and tokenizer, rebuilt from a checkpoint alone."""
    args, vocab = checkpoint["model_args"], checkpoint["vocab"]
    if args.get("vocab_size") != len(vocab):
        raise CheckpointError(f"checkpoint does not hold a usable model: its vocabulary has "
                              f"{len(vocab)} characters, its model "
                              f"{args.get('vocab_size')!r}")  # fmt: skip
    try:
        config = GPTConfig(**args)
        check_fits(4 * parameter_count(config), torch.device(device), "the checkpoint's model",
                   CheckpointError)  # fmt: skip
        model = GPT(config)
        tokenizer = CharTokenizer(vocab)
    except (TypeError, ValueError, ConfigError) as e:
        reason = first_line(e, 200)
        raise CheckpointError(f"checkpoint does not hold a usable model: {reason}") from None
    load_weights(model, checkpoint["model"])
    return model.to(device).eval(), tokenizer


def load_weights(model: GPT, state: dict[str, torch.Tensor]) -> None:
    """model.load_state_dict(state), or a one-line CheckpointError: weights that do not fit the
    model's shapes, a weight missing, or NaN or infinite weights (every output would be NaN)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__
        raise CheckpointError(f"the checkpoint's weights do not fit its model: "
                              f"{reason[:200]}") from None  # fmt: skip
    broken = [name for name, t in state.items() if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        more = " and more" if len(broken) > 3 else ""
        raise CheckpointError(f"the checkpoint's weights are NaN or infinite "
                              f"({', '.join(broken[:3])}{more}): it cannot be used")  # fmt: skip


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, CharTokenizer]:
    """The trained model (in eval mode, on device) and its tokenizer, from a checkpoint file or a
    run directory (its best.pt, else last.pt): the way in from Python (README has an example)."""
    return restore_model(load_checkpoint(path, map_location=device), device)


def cpu_copy(state: Any, copied: dict[int, torch.Tensor] | None = None) -> Any:
    """state (nested dicts, lists, tuples) with every tensor copied to the CPU: this moment's values
    while training changes the originals; a tensor seen twice (tied wte, lm_head) stays shared."""
    copied = {} if copied is None else copied
    if isinstance(state, torch.Tensor):
        if id(state) not in copied:
            copied[id(state)] = state.detach().to("cpu", copy=True)
        return copied[id(state)]
    if isinstance(state, dict):
        result = type(state)((key, cpu_copy(value, copied)) for key, value in state.items())
        if hasattr(state, "_metadata"):  # a module's state dict: its layout versions
            result._metadata = state._metadata
        return result
    if isinstance(state, list | tuple):
        return type(state)(cpu_copy(value, copied) for value in state)
    return state
