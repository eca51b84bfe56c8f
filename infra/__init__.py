"""What training, sampling and evaluation all stand on: files written atomically and a run
directory's lock (`infra.files`), the device and precision policy (`infra.device`), checkpoint files
(`infra.checkpoint`) and one command-line style (`infra.cli`). files, device and cli import nothing
of the project; checkpoint imports the model and the tokenizer; nothing here imports training."""
