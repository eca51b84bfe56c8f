"""The bottom layer, which imports nothing else of the project: what a user's mistake is and how
every script reports it (`infra.errors`), files written atomically and a run directory's lock
(`infra.files`), one command-line style (`infra.cli`), the device and precision policy for
training and for inference (`infra.device`), and pictures with the characters on their axes
(`infra.figures`)."""
