"""TINY: a setting small enough that a whole pipeline trains in seconds (what the house's tests build)."""
from dataclasses import replace

from minirlhf.model import GPTConfig
from minirlhf.pretrain import PretrainConfig
from minirlhf.reward import RewardConfig
from minirlhf.rlhf import PPOConfig
from minirlhf.settings import PRESETS, EvalConfig
from minirlhf.sft import SFTConfig
from minirlhf.world import WorldConfig

TINY = replace(PRESETS["fast"], name="tiny", world=WorldConfig(n_internet=200, n_demonstrations=20),
               model=GPTConfig(n_layer=1, n_head=2, n_embd=16), pretrain=PretrainConfig(steps=3, batch_size=4),
               sft=SFTConfig(epochs=0.2, batch_size=4), reward=RewardConfig(n_rankings=8, prompts_per_batch=4, epochs=1),
               ppo=PPOConfig(steps=1, batch_size=4, minibatch_size=2, epochs=1, max_new_tokens=4),
               eval=EvalConfig(samples_per_prompt=1, n_heldout_docs=10), frontier=False)
