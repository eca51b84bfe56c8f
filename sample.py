"""Generate text from a checkpoint: `python sample.py --ckpt out/small` (see --help)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from checkpoint import load_model
from infra.cli import option, parse_into, read_text_file, require
from infra.device import inference_autocast, resolve_device
from infra.errors import ConfigError, UserError, run_main
from model import generate_tokens
from model.attention_maps import attention_maps
from viz import Explorer
from viz.explorer import attention_over_text
from viz.figures import attention_figure

SEPARATOR = "\n" + "-" * 40
# Below this, logits divided by the temperature overflow; 0 already means greedy.
MIN_TEMPERATURE = 1e-3


@dataclass(frozen=True)
class SampleOptions:
    ckpt: str = option(help="a checkpoint file, or a run directory (its best.pt, else last.pt)")
    prompt: str | None = option(None, "text to continue (default: a newline)")
    prompt_file: str | None = option(None, "read the prompt from this file")
    num_samples: int = option(1, "how many samples")
    max_new_tokens: int = option(500, "characters per sample")
    temperature: float = option(0.8, "below 1 is safer, above 1 wilder; 0 is greedy")
    top_k: int | None = option(None, "sample only the k likeliest characters")
    top_p: float | None = option(None, "sample only the likeliest characters whose mass reaches p")
    seed: int = option(1337, "the same seed gives the same text")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    stream: bool | None = option(None, "print characters as they come (default: on a terminal)")
    kv_cache: bool = option(True, "keep keys and values; --no_kv_cache recomputes each step (slow)")
    attention: str | None = option(None, "also show what every head attends to: FILE.html, "
                                   "an interactive page over the prompt and the first sample; "
                                   "FILE.png, a picture over the prompt")  # fmt: skip

    def __post_init__(self) -> None:
        require(self.temperature == 0 or self.temperature >= MIN_TEMPERATURE, self, "temperature",
                f"must be 0 (greedy) or at least {MIN_TEMPERATURE}")  # fmt: skip
        require(0 <= self.seed < 2**63, self, "seed", "must be between 0 and 2**63 - 1")
        suffix = None if self.attention is None else Path(self.attention).suffix
        require(suffix in (None, ".png", ".html"), self, "attention",
                "the file's suffix chooses what is written: use .png or .html")  # fmt: skip
        require(self.top_k is None or self.top_k >= 1, self, "top_k", "must be at least 1")
        require(self.top_p is None or 0 < self.top_p <= 1, self, "top_p", "must be in (0, 1]")
        require(self.num_samples >= 1, self, "num_samples", "must be at least 1")
        require(self.max_new_tokens >= 0, self, "max_new_tokens", "must not be negative")
        if self.prompt is not None and self.prompt_file is not None:
            raise ConfigError("give --prompt or --prompt_file, not both")


def write_attention(model, ids: list[int], tokenizer, options, prompt_length: int) -> None:
    """What every head attends to over ids, into --attention (its help says what each suffix
    writes). A file that cannot be written is one line; one that was is said on stderr."""
    path = options.attention
    try:
        if path.endswith(".png"):
            idx = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
            maps = [layer[0] for layer in attention_maps(model, idx)]
            shown = options.ckpt.replace("$", r"\$")  # "$" would start a matplotlib formula
            title = f"{shown}: attention over the prompt (rows: queries, columns: keys)"
            attention_figure(maps, tokenizer.decode(ids), title).savefig(path, dpi=120)
        else:
            with inference_autocast(next(model.parameters()).device):
                attention = attention_over_text(model, ids)
            title = f"{options.ckpt}, {len(ids)} characters"
            Explorer(attention, list(tokenizer.chars), prompt_length, title).save(path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    print(f"wrote {path}", file=sys.stderr)


def sample(argv: list[str] | None = None) -> None:
    options = parse_into(SampleOptions, argv, "Generate text from a checkpoint of train.py.")
    if options.prompt_file is not None:
        prompt = read_text_file("--prompt_file", options.prompt_file)
    else:
        prompt = "\n" if options.prompt is None else options.prompt
    if not prompt:
        raise ConfigError("the prompt is empty; give at least one character")
    device = resolve_device(options.device)
    model, tokenizer = load_model(options.ckpt, device)
    prompt_ids = tokenizer.encode(prompt)

    block_size = model.config.block_size
    if len(prompt_ids) > block_size:
        print(f"note: the prompt has {len(prompt_ids)} characters; the model sees only the last "
              f"{block_size} (its context)", file=sys.stderr)  # fmt: skip
    if options.attention is not None and options.attention.endswith(".png"):
        write_attention(model, prompt_ids[-block_size:], tokenizer, options, len(prompt_ids))
    stream = sys.stdout.isatty() if options.stream is None else options.stream
    autocast = inference_autocast(device)
    generator = torch.Generator(device=device).manual_seed(options.seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    for i in range(options.num_samples):
        if i:
            print(SEPARATOR)
        print(prompt, end="", flush=stream)
        new_tokens = generate_tokens(
            model, idx, options.max_new_tokens, temperature=options.temperature,
            top_k=options.top_k, top_p=options.top_p, generator=generator,
            use_kv_cache=options.kv_cache,
        )  # fmt: skip
        new_ids = []
        try:
            with autocast:
                for token in new_tokens:
                    new_ids.append(int(token))
                    if stream:
                        print(tokenizer.decode(new_ids[-1:]), end="", flush=True)
        except RuntimeError as e:  # torch.multinomial's complaint about NaN or inf probabilities
            if "inf, nan" not in str(e):
                raise
            raise UserError("the model produced NaN or infinite logits: it cannot sample") from None
        finally:  # on Ctrl-C too: what was generated is written, not lost with the process
            print("" if stream else tokenizer.decode(new_ids), flush=True)
        if i == 0 and options.attention is not None and options.attention.endswith(".html"):
            write_attention(model, prompt_ids + new_ids, tokenizer, options, len(prompt_ids))


def main(argv: list[str] | None = None) -> int:
    return run_main(sample, argv, prog="sample.py")


if __name__ == "__main__":
    sys.exit(main())
