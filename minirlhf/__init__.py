"""minirlhf: Reinforcement Learning from Human Feedback, built from scratch in a synthetic world."""
import time as _time

__version__ = "0.1.0"
IMPORTED_AT = _time.time()   # the stage cache refuses to train with code edited after this (see pipeline/cache.py)
