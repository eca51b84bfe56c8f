"""Training, above `model/`, `data/` and `checkpoint/`: the training config (`config`), the trainer
that saves and restores its own state (`trainer`), the optimizers and the learning-rate schedule
(`optim`), loss estimates and views inside the model (`evaluation`), TensorBoard and the console
(`logger`, `console`), random streams (`rng`), stopping every rank together (`stopping`), MFU
(`mfu`), and the flow of `python train.py` (`run`)."""
