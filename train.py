"""Train a character-level GPT: `python train.py --config small.yaml` (see --help)."""

from __future__ import annotations

import signal
import sys

from data import DataError
from infra.checkpoint import CheckpointError
from infra.cli import ConfigError
from infra.device import DeviceError
from infra.files import RunDirError
from training.config import parse_args
from training.run import error_prefix, run_training
from training.stopping import NonFiniteLoss, TrainingInterrupted

USER_ERRORS = (DataError, DeviceError, CheckpointError, RunDirError, NonFiniteLoss)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a problem with data, device, checkpoint, files or the run, 2 a mistake
    in the configuration, 128 + signal number when stopped by SIGINT (130) or SIGTERM (143)."""
    try:
        args = parse_args(argv)
        run_training(args)
    except ConfigError as e:
        print(f"{error_prefix()}config error: {e}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"{error_prefix()}error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        config_flag = f"--config {args.config_name} " if args.config_name != "small" else ""
        print(
            f"{error_prefix()}stopped by {signal.Signals(e.signum).name}; saved {e.checkpoint}. "
            f"Continue with: python train.py {config_flag}--resume {e.checkpoint.parent}",
            file=sys.stderr,
        )
        return 128 + e.signum
    except KeyboardInterrupt:  # before training began, or a second Ctrl-C during it
        print(f"{error_prefix()}interrupted: stopped without saving a checkpoint", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk, a file that cannot be written
        print(f"{error_prefix()}error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
