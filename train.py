"""Train a character-level GPT: `python train.py --config small.yaml` (see --help).

Exit codes: 0 done; 1 a problem with the data, device, checkpoint or run directory; 2 a mistake
in the configuration; 128 + the signal's number when a signal stopped it (130 for SIGINT, 143 for
SIGTERM, 129 for SIGHUP), after saving last.pt.
"""

from __future__ import annotations

import sys

from infra.errors import run_main
from training import run


def main(argv: list[str] | None = None) -> int:
    return run_main(run.main, argv, prog="train.py", prefix=run.rank_prefix)


if __name__ == "__main__":
    sys.exit(main())
