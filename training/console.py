"""What a person reads while training runs: a tqdm bar on a terminal with log lines above it,
plain lines elsewhere (a file, CI), and a run that goes on when its reader goes away."""

from __future__ import annotations

import sys

from tqdm import tqdm

from infra.errors import mute


class Console:
    """Prints for rank 0 only. On a terminal, a tqdm bar tracks iterations and log lines print
    above it; elsewhere (CI, a file) the bar is off and log lines are plain. When the reader of
    the output goes away (`train.py | head`, a closed terminal), the output is dropped and the
    run goes on."""

    def __init__(
        self, enabled: bool = True, interactive: bool | None = None, prefix: str = ""
    ) -> None:
        self.enabled, self.prefix = enabled, prefix
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar: tqdm | None = None
        self.owner = self  # the console whose bar this one prints above (`labelled`)

    def labelled(self, prefix: str) -> Console:
        """A console for one of several runs trained together: its lines start with prefix, and
        print above this console's bar."""
        console = Console(self.enabled, self.interactive, prefix)
        console.owner = self
        return console

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
