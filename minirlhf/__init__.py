"""minirlhf: Reinforcement Learning from Human Feedback, built from scratch in a synthetic world."""
__version__ = "0.1.0"
