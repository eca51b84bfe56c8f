"""The training machinery behind train.py: config, runtime policy, schedules, checkpoints, logging
and the trainer."""
