"""The pieces `train.py` calls, above `model/`, `data/`, `checkpoint/` and `viz/`: the config
(`config`) and how it is read (`command_line`), the trainer, whose state saves and restores itself
and whose step trains (`trainer`), the optimizers and the learning-rate schedule (`optim`), loss
estimates and the sample (`evaluation`), which run a directory belongs to (`rundir`), several
processes (`distributed`), signals and a non-finite loss (`stopping`), TensorBoard and the console
(`logger`, `console`), random streams (`rng`) and MFU (`mfu`)."""
