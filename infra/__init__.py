"""What training, sampling and evaluation all stand on: files written atomically and a run
directory's lock (`infra.files`), the device and precision policy (`infra.device`), checkpoint files
(`infra.checkpoint`) and one command-line style (`infra.cli`). Nothing here imports training."""
