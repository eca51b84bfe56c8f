"""Work that need not hold up training, done beside it by one thread, in the order submitted:
writing checkpoints and drawing TensorBoard's pictures from copies the training thread made.

On a GPU this is what keeps an evaluation cheap: the training thread copies what is to be
written or drawn (milliseconds) and goes back to queueing steps, while this thread serializes,
writes and draws on a CPU core that would otherwise wait. Files stay as safe as before: every
checkpoint is still written atomically, and the trainer waits for this work before the run ends
and before it stops on a signal.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Background:
    """One worker thread (made on first use) and the jobs submitted to it that are not yet
    waited for."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="background")
        self.pending: list[Future] = []

    def submit(self, job: Callable[[], object]) -> None:
        self.pending.append(self.executor.submit(job))

    def wait(self) -> None:
        """Return when every job submitted so far has ended; raise the first one's error, if one
        failed (a full disk while writing a checkpoint), here in the thread that waits."""
        pending, self.pending = self.pending, []
        errors = [future.exception() for future in pending]  # each waits for its job
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first
