"""The pieces `train.py` calls, above `model/`, `data/`, `checkpoint/` and `viz/`."""
