"""Training (``train/train.py``, single process or torchrun DDP) and evaluation (``train/evaluate.py``)."""
