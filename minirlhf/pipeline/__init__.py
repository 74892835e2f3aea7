"""The orchestration around the story: the stage cache, the registry of named runs, the main job.

    from minirlhf.pipeline import Pipeline
    pipe = Pipeline()
    pipe.model("sft"); pipe.model("reward"); pipe.history("rlhf")
"""
from .stages import Pipeline, default_home

__all__ = ["Pipeline", "default_home"]
