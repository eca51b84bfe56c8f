"""Work that need not hold up training (writing checkpoints, drawing pictures), done in order by
one thread on an otherwise idle CPU core (docs/performance.md, "What an evaluation costs")."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Background:
    """One worker thread (made on first use) and the jobs submitted to it, not yet waited for."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="background")
        self.pending: list[Future] = []

    def submit(self, job: Callable[[], object]) -> None:
        self.pending.append(self.executor.submit(job))

    def wait(self) -> None:
        """Wait for every job submitted so far; raise the first failure's (a full disk) here."""
        pending, self.pending = self.pending, []
        errors = [f.exception() for f in pending if f.exception() is not None]  # each waits
        if errors:
            raise errors[0]
