"""What a person reads while training runs."""

from __future__ import annotations

import sys

from tqdm import tqdm

from infra.errors import mute


class Console:
    """Prints for rank 0 only: above a tqdm bar on a terminal, plain lines elsewhere (CI, a file).
    When the reader goes away (`train.py | head`, a closed terminal), output is dropped; the run
    goes on."""

    def __init__(
        self, enabled: bool = True, interactive: bool | None = None, prefix: str = "", owner=None
    ) -> None:
        self.enabled, self.prefix = enabled, prefix
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar: tqdm | None = None
        self.owner = owner or self  # the console whose bar this one prints above (`labelled`)

    def labelled(self, prefix: str) -> Console:
        """A console for one of several runs trained together: prefixed lines, above this bar."""
        return Console(self.enabled, self.interactive, prefix, owner=self)

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            if self.owner.bar is not None:
                tqdm.write(self.prefix + message, file=sys.stdout)
            else:
                print(self.prefix + message, flush=True)
        except OSError:  # EPIPE, or EIO from a closed terminal
            mute(sys.stdout)

    def start_bar(self, total: int, initial: int) -> None:
        if self.enabled and self.interactive:
            # a short bar, and tokens/s in the postfix instead of it/s, leave room on narrow screens
            layout = "{l_bar}{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, bar_format=layout)

    def update_bar(self, n: int = 1, postfix: str | None = None) -> None:
        if self.bar is not None:
            try:
                self.bar.update(n)
                if postfix is not None:
                    self.bar.set_postfix_str(postfix, refresh=False)
            except OSError:  # the terminal is gone: no bar from here on
                mute(sys.stderr)
                self.bar = None

    def close_bar(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:
                mute(sys.stderr)
            self.bar = None
