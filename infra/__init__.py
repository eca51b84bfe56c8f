"""The bottom layer, which imports nothing else of the project: every error a user can see and how
every script reports it (`infra.errors`), files written atomically, a run directory's lock and
links refused (`infra.files`), one command-line style (`infra.cli`), the device, precision and
compile policy for training and for inference (`infra.device`), work done beside training
(`infra.background`) and progress where a user waits (`infra.progress`)."""
