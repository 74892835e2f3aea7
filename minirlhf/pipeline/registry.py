"""The registry of named runs: every stage that the main job, the notebooks and the tests use.

A stage is a recipe (a public function beside its algorithm, callable without any cache) and the
place each of its arguments comes from:

    Upstream("sft")                    the model the stage "sft" trained (a fresh copy for each argument)
    Upstream("reward", "comparisons")  another thing that stage saved
    Setting("ppo", kl_coef=0.0)        a part of the Settings, here with a field changed
    Requests("reward", "rl")           the world's requests of these prompt splits
    Data("internet", "text")           a column of the world's data sets
    any other value                    passed as it is

`tokenizer`, `seed` (the setting's seed plus the stage's seed_offset), `device` and `desc` (the stage's
name, for progress bars) are passed to every recipe that takes them. A run needed by two users is
trained once per seed and setting: stages that read the same things share one folder of the cache.

Adding an algorithm is one file (its recipe, returning {"model": policy, "log": {...}}) and one line
here with `algorithm=True`: the main job then trains it, evaluates it beside SFT, puts it in
metrics.json and the report, and `--algorithms` accepts its name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..best_of_n import best_of_n_stage
from ..dpo import dpo_stage
from ..grpo import grpo_stage
from ..labelers import PERSONAS
from ..pretrain import pretrain_stage
from ..reward import reward_stage
from ..rlhf import ppo_stage
from ..rloo import rloo_stage
from ..sft import sft_stage
from ..world import world_stage


class Source:
    """Where a recipe argument comes from. `describe` gives what the stage's key hashes (and adds the stages
    it reads to `upstream`); `load` gives the value the recipe receives. The two stand side by side so they
    cannot drift apart: a new kind of source is one new subclass."""

    def describe(self, pipe, upstream: dict):
        raise NotImplementedError

    def load(self, pipe):
        raise NotImplementedError


@dataclass(frozen=True)
class Upstream(Source):
    stage: str
    artifact: str = "model"

    def describe(self, pipe, upstream):
        upstream[self.stage] = pipe.key(self.stage)
        return {"upstream": upstream[self.stage], "artifact": self.artifact}   # the key, not the name

    def load(self, pipe):
        return pipe.artifact(self.stage, self.artifact)   # a fresh copy for each argument


@dataclass(frozen=True)
class Requests(Source):
    splits: tuple[str, ...]
    without: tuple[str, ...] = ()     # request kinds left out

    def __init__(self, *splits: str, without: tuple[str, ...] = ()):
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "without", tuple(without))

    def describe(self, pipe, upstream):   # the world's data: keyed on the world stage
        upstream["world"] = pipe.key("world")
        return {"requests": list(self.splits), **({"without": list(self.without)} if self.without else {})}

    def load(self, pipe):
        return [r for split in self.splits for r in pipe.requests(split) if r.kind not in self.without]


@dataclass(frozen=True)
class Data(Source):
    split: str
    column: str

    def describe(self, pipe, upstream):
        upstream["world"] = pipe.key("world")
        return {"data": [self.split, self.column]}

    def load(self, pipe):
        return pipe.datasets()[self.split][self.column]


class Setting(Source):
    """A part of the Settings ("ppo", "eval.max_new_tokens"), with fields replaced: a value, a function
    of the setting's own config (e.g. steps=lambda c: max(c.steps, 60)), or another part of the Settings
    (e.g. ptx_coef=Setting("ptx_coef"): a number each setting picks)."""

    def __init__(self, path: str, **changes):
        self.path, self.changes = path, changes

    def resolve(self, settings):
        value = settings
        for part in self.path.split("."):
            value = getattr(value, part)
        return replace(value, **{k: v.resolve(settings) if isinstance(v, Setting) else v(value) if callable(v) else v
                                 for k, v in self.changes.items()}) if self.changes else value

    def describe(self, pipe, upstream):   # keyed on the resolved value: only what the stage gets counts
        return self.resolve(pipe.settings)

    def load(self, pipe):
        return self.resolve(pipe.settings)


@dataclass(frozen=True)
class Stage:
    name: str
    recipe: Callable[..., dict]
    args: dict[str, Any] = field(default_factory=dict)
    seed_offset: int = 0          # a stage that must not share random streams with another (iterated rounds)
    algorithm: bool = False       # a policy trained from SFT that the main job evaluates
    title: str = ""               # how plots and the report name it


STAGES: dict[str, Stage] = {}


IMPLICIT = ("tokenizer", "seed", "device", "desc")


def register(name: str, recipe: Callable[..., dict], seed_offset: int = 0, algorithm: bool = False,
             title: str = "", **args) -> Stage:
    """Add a named stage to the registry: a name once, its upstream stages registered before it."""
    if name in STAGES:
        raise ValueError(f"a stage named {name!r} is registered already")
    params = inspect.signature(recipe).parameters
    unknown = set(args) - set(params)
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in args
               and p not in IMPLICIT]
    if unknown or missing:
        raise TypeError(f"stage {name!r}: {recipe.__name__} takes no {sorted(unknown)} and needs {missing}")
    for source in args.values():
        for src in source if isinstance(source, list) else [source]:
            if isinstance(src, (tuple, dict)) and any(isinstance(x, Source) for x in
                                                      (src.values() if isinstance(src, dict) else src)):
                raise TypeError(f"stage {name!r}: put several sources in a list, not a {type(src).__name__}")
            if isinstance(src, Upstream) and src.stage not in STAGES:
                raise ValueError(f"stage {name!r} reads {src.stage!r}, which is not registered (yet): register "
                                 f"it first; registered: {', '.join(STAGES)}")
    STAGES[name] = Stage(name, recipe, args, seed_offset, algorithm, title or name)
    return STAGES[name]


def algorithms() -> list[str]:
    return [name for name, stage in STAGES.items() if stage.algorithm]


ALIASES = {"ppo": "rlhf", "best_of_n": "bon"}   # what `--algorithms` also accepts: the algorithm's own name


# -- the InstructGPT pipeline ------------------------------------------------------------------
register("world", world_stage, config=Setting("world"))
register("base", pretrain_stage, texts=Data("internet", "text"), model_config=Setting("model"),
         cfg=Setting("pretrain"), title="base")
register("sft", sft_stage, model=Upstream("base"), prompts=Data("demonstrations", "prompt"),
         responses=Data("demonstrations", "response"), cfg=Setting("sft"), title="SFT")
# the RL prompts are ranked too: the reward model must be right where PPO will look
REWARD_ARGS = dict(sft_model=Upstream("sft"), train_requests=Requests("reward", "rl"),
                   heldout_requests=Requests("eval"), norm_requests=Requests("rl"), cfg=Setting("reward"),
                   max_new_tokens=Setting("eval.max_new_tokens"))
register("reward", reward_stage, **REWARD_ARGS)
for _persona in [p for p in PERSONAS if p != "gold"]:   # notebook 08 and the ledger: a reward model per persona
    register(f"reward_{_persona}", reward_stage, **REWARD_ARGS, labeler=_persona)
PPO_ARGS = dict(policy=Upstream("sft"), reference=Upstream("sft"), reward_model=Upstream("reward"),
                requests=Requests("rl"), ptx_texts=Data("internet", "text"))
# a run with a held-out curve answers each held-out prompt at step 0 and CHECKPOINTS more (heldout.HeldoutCurve),
# as often at each as the evaluation does (24 answers in fast, 8 in default and gpu: the comment at `_checkpoints`)
CHECKPOINTS, HELDOUT_SAMPLES = 6, Setting("eval.samples_per_prompt")
# RLHF's curve is its points on notebook 09's frontier, as RLOO's and GRPO's runs give theirs (the answers draw
# from a random stream of their own: the run trains to the same weights as without them)
register("rlhf", ppo_stage, **PPO_ARGS, heldout_requests=Requests("eval"), heldout_checkpoints=CHECKPOINTS,
         heldout_samples=HELDOUT_SAMPLES, cfg=Setting("ppo"), algorithm=True, title="RLHF (PPO)")
register("rlhf_no_kl", ppo_stage, **PPO_ARGS, cfg=Setting("ppo", kl_coef=0.0), algorithm=True,
         title="RLHF, β = 0 (no KL penalty)")

# -- the notebooks' experiments ----------------------------------------------------------------
# notebook 07: PPO-ptx, the pretraining loss mixed in, with the setting's γ_ptx (Settings.ptx_coef: what other
# values cost and bought is written beside it)
register("rlhf_ptx", ppo_stage, **PPO_ARGS, cfg=Setting("ppo", ptx_coef=Setting("ptx_coef")), title="RLHF + ptx")
# notebook 06: runs long enough to over-optimise (the settings' own PPO runs are shorter: in fast, after 60
# or 120 steps seed 2's β = 0 run was still at its gold peak) and the lessons ledger: the policy answers the
# held-out prompts at step 0 and LONG_CHECKPOINTS more (heldout.HeldoutCurve). The β = 0 run's fall from its
# gold peak on fast seeds 0, 1, 2 (one AMD EPYC machine; a margin of 0.02 + 2 SE to hold) after 180 steps:
# 0.133 0.042 0.012; 240: 0.120 0.050 0.030; 300: 0.124 0.036 0.078 (with seed 2's reward-model score falling
# after the peak). On another machine 180 steps gave 0.033 0.054 0.120: which seed falls least is chance.
# The learning rate is at least LONG_LR: at the default setting's own 3e-5, seed 0's β = 0 run had not
# over-optimised in 240 steps (held-out gold 0.779 → 0.912 at step 120 → 0.906); at 1e-4 it peaks at 0.881
# (step 8) and falls to 0.527 while its reward-model score climbs 0.11 → 3.42, and the run with the penalty
# ends at 0.912 (KL 1.5 nats), with the reward model trained 8 epochs at 6e-4. The default's better reward model
# (20 epochs at 3e-4, f8cfa04) is harder to hack: its score climbs only −0.16 → 0.50 in 240 steps (KL 30 nats) and
# does not go on rising after gold's peak (the README of 6fe5662, seed 0). With 2,400 rankings (bd4a4ec) seed 0's β = 0 run
# at 1e-4 (held-out gold, the plain mean over answers) rose 0.747 → 0.873 at step 8 and ended at 0.845, its score
# 0.27 → 0.52, KL 13 nats: too small a hack for notebook 06 (six ledger claims failed, round 2's among them). At
# 3e-4 gold never rose (0.715 at step 8, 0.546 at the end); at 2e-4 it rose to 0.805 at step 8 and fell to 0.578
# while the score climbed 0.14 → 2.04 (KL 128 nats). So LONG_LR = 2e-4, which was fast's own lr: fast's long runs
# kept their keys, and kept them again when fast's own lr went down to 1e-4 (settings.py); the gpu setting's long
# runs (its own lr 1e-5) get it too, not yet measured on a GPU
# PPO's long pair answers at steps 4 and 2 too (8 checkpoints of 240 steps; the shorter runs have those with 6):
# with β fixed it is 1.3–2.5 nats from SFT by step 8 in fast, and notebook 09's frontier, which drew PPO's curve
# from this pair until RLHF's own run had a curve, reads each curve at 1 nat. With 6, PPO's curve had only a
# straight line from SFT to its first point there, drawn above where PPO was: on fast seed 0 the line to
# (1.55 nats, 0.782) read 0.740 at 1 nat; steps 2 and 4 measured (0.91, 0.686) and (1.13, 0.716). The training
# is the same (the held-out answers draw from their own random stream).
# RLOO's and GRPO's long β = 0 runs with 8 as well changed no claim of the fast ledger: they keep CHECKPOINTS, as
# every other run with a held-out curve
# The long runs keep their learning rate constant (anneal_lr=False), where every other RL run lets it fall to 0: they
# are watched along their course, and show where a policy goes as optimisation goes on; a rate falling to 0 stops
# it partway. With the decay, the fall of the β = 0 runs' held-out gold from their best shrank (fast, 2026-12-01,
# the lesser margins of the ledger's over-optimisation claims: GRPO 0.113, 0.021, 0.027 on seeds 0, 1, 2, where the
# constant rate had given 0.094, 0.117, 0.079 with the reward models of the gold labeler before; GRPO's β = 0 run
# on seed 1 ended 41 nats from SFT, seed 0's 111), and round 2's larger repair after the β = 0 run held on seed 2
# by 0.078 (SE 0.020) against a margin of 0.05
LONG_STEPS, LONG_LR, LONG_CHECKPOINTS = 240, 2e-4, 8
_long = dict(steps=lambda c: max(c.steps, LONG_STEPS), lr=lambda c: max(c.lr, LONG_LR), anneal_lr=False)
# every run with a held-out curve (these and notebook 09's) answers each held-out prompt as often at each checkpoint
# as the evaluation does (24 in fast, 8 in default and gpu). With 8 in fast for notebook 09's curves, the SE of a
# β = 0 group run's over-optimisation (then the lesser of its gold's rise and fall) was 0.012–0.015 on seed 0, and two
# of four training seeds' runs of RLOO, and two of GRPO, failed that ledger claim there (0.032–0.039); with 24 its
# SE there is 0.007 (RLOO) and 0.010 (GRPO), and the ledger's runs hold on seeds 0–2 (README)
_checkpoints = dict(heldout_requests=Requests("eval"), heldout_checkpoints=LONG_CHECKPOINTS,
                    heldout_samples=HELDOUT_SAMPLES)
register("rlhf_long", ppo_stage, **PPO_ARGS, **_checkpoints, cfg=Setting("ppo", **_long), title="β fixed")
register("rlhf_long_no_kl", ppo_stage, **PPO_ARGS, **_checkpoints, cfg=Setting("ppo", kl_coef=0.0, **_long),
         title="β = 0 (no penalty)")
register("rlhf_long_adaptive", ppo_stage, **PPO_ARGS, title="adaptive β",
         cfg=Setting("ppo", adaptive_kl=True, kl_horizon=lambda c: 10 * c.batch_size, **_long))
# notebook 08: a second round of iterated RLHF: new rankings of the round-1 policy's answers, a new reward
# model on all comparisons so far, and PPO again from the round-1 policy (the KL still measured against SFT)
ITERATED_SEED_OFFSET = 100   # round r samples and trains with the seed + 100·r
for _suffix, _first in (("", "rlhf"), ("_long_no_kl", "rlhf_long_no_kl")):
    register(f"reward_round2{_suffix}", reward_stage, **{**REWARD_ARGS, "policy": Upstream(_first)},
             previous_comparisons=[Upstream("reward", "comparisons")], previous_reward_model=Upstream("reward"),
             seed_offset=2 * ITERATED_SEED_OFFSET)
# notebook 05: PPO that trains only the top of the network (the article's "grey neurons"): the lowest
# FROZEN_LAYERS blocks frozen, and then the embeddings too (tied to the output head: both freeze together)
FROZEN_LAYERS = 1
register("rlhf_frozen", ppo_stage, **PPO_ARGS, cfg=Setting("ppo", freeze_layers=FROZEN_LAYERS),
         title=f"RLHF, lowest {FROZEN_LAYERS} block frozen")
register("rlhf_frozen_embeddings", ppo_stage, **PPO_ARGS,
         cfg=Setting("ppo", freeze_layers=FROZEN_LAYERS, freeze_embeddings=True),
         title=f"RLHF, lowest {FROZEN_LAYERS} block and embeddings frozen")
# notebook 07: the same PPO against the reward model of labelers who mind a remark about a group (labelers.py)
register("rlhf_fair_minded", ppo_stage, cfg=Setting("ppo"), title="RLHF, fair-minded labelers",
         **{**PPO_ARGS, "reward_model": Upstream("reward_fair_minded")})
# notebook 08: which prompts get labelled. A reward model whose rankings never held a harmful request (as many
# rankings, of the other kinds' prompts), and the same PPO as "rlhf" against it, on all the RL prompts
UNLABELLED_KIND = "harmful"
register(f"reward_no_{UNLABELLED_KIND}", reward_stage,
         **{**REWARD_ARGS, "train_requests": Requests("reward", "rl", without=(UNLABELLED_KIND,))})
register(f"rlhf_no_{UNLABELLED_KIND}", ppo_stage, cfg=Setting("ppo"), title=f"RLHF, no {UNLABELLED_KIND} prompt labelled",
         **{**PPO_ARGS, "reward_model": Upstream(f"reward_no_{UNLABELLED_KIND}")})
register("rlhf_round2", ppo_stage, cfg=Setting("ppo"), seed_offset=2 * ITERATED_SEED_OFFSET, title="RLHF, round 2",
         **{**PPO_ARGS, "policy": Upstream("rlhf"), "reward_model": Upstream("reward_round2")})

# -- after InstructGPT (notebook 09): the same SFT model, comparisons and reward model, other algorithms ------
_dpo = dict(policy=Upstream("sft"), reference=Upstream("sft"), comparisons=Upstream("reward", "comparisons"),
            reward_model=Upstream("reward"), heldout_requests=Requests("eval"), heldout_checkpoints=CHECKPOINTS,
            heldout_samples=HELDOUT_SAMPLES, max_new_tokens=Setting("eval.max_new_tokens"),
            no_end_score=Setting("ppo.no_end_score"))
register("dpo", dpo_stage, **_dpo, cfg=Setting("dpo"), algorithm=True, title="DPO")
DPO_BETAS = (0.01, 0.03, 0.3, 1.0)   # the frontier: DPO across β (the "dpo" stage has the setting's own: fast's
# 0.1, default's 1.0, whose run this sweep trains again with one held-out checkpoint: the same point drawn twice)
for _beta in DPO_BETAS:   # the frontier reads each β's end (and its start, SFT itself): two measurements
    register(f"dpo_beta_{_beta:g}", dpo_stage, **{**_dpo, "heldout_checkpoints": 1}, cfg=Setting("dpo", beta=_beta),
             title=f"DPO, β = {_beta:g}")
GROUP_SIZE = 4           # RLOO and GRPO: answers per prompt; PPO's batch of answers = batch_size / 4 prompts × 4
_group = dict(policy=Upstream("sft"), reference=Upstream("sft"), reward_model=Upstream("reward"),
              requests=Requests("rl"), cfg=Setting("ppo"), group_size=GROUP_SIZE, heldout_requests=Requests("eval"),
              heldout_checkpoints=CHECKPOINTS, heldout_samples=HELDOUT_SAMPLES)
register("rloo", rloo_stage, **_group, algorithm=True, title="RLOO")
register("grpo", grpo_stage, **_group, algorithm=True, title="GRPO")
# … and each without a KL penalty, as long as PPO's β = 0 run (LONG_STEPS, at LONG_LR at least): with β fixed
# they stay within a few nats of SFT, and the frontier's curves are to span the KLs that PPO's β = 0 run reaches
for _algo, _recipe in (("rloo", rloo_stage), ("grpo", grpo_stage)):
    register(f"{_algo}_long_no_kl", _recipe, **{**_group, "cfg": Setting("ppo", kl_coef=0.0, **_long)},
             title=f"{_algo.upper()}, β = 0 (no penalty)")
# best-of-n: the policy answers with the best of 8; its frontier is exact for a pool of 32 SFT answers per
# held-out prompt, sampled with the seed + 22 (a stream no other stage uses)
BEST_OF_N, BEST_OF_NS, BEST_OF_POOL, BEST_OF_SEED_OFFSET = 8, (1, 2, 4, 8, 12, 16, 24, 32), 32, 22
register("bon", best_of_n_stage, seed_offset=BEST_OF_SEED_OFFSET, policy=Upstream("sft"), reward_model=Upstream("reward"),
         heldout_requests=Requests("eval"), n=BEST_OF_N, ns=BEST_OF_NS, pool=BEST_OF_POOL,
         max_new_tokens=Setting("eval.max_new_tokens"), no_end_score=Setting("ppo.no_end_score"), algorithm=True,
         title=f"best-of-{BEST_OF_N}")

# the frontier (notebook 09, frontier.py): the runs that give each algorithm's points. Each RL method's are its
# own run (the setting's lr, annealed) and a run as long as PPO's β = 0 one without a penalty. PPO's were notebook
# 06's long pair (β fixed and β = 0, a constant lr of at least LONG_LR) before RLHF's run had a curve: a harder
# push than RLHF's own, which read below it (fast seed 0 at 1 nat: 0.682 along the pair, 0.722 along RLHF's run;
# default seed 0 at 0.5 nats 0.770 along the pair, where RLHF's run ends, 0.51 nats from SFT on its held-out
# curve, with 0.909)
FRONTIER_RUNS = {"rlhf": ("rlhf", "rlhf_long_no_kl"), "rloo": ("rloo", "rloo_long_no_kl"),
                 "grpo": ("grpo", "grpo_long_no_kl"),
                 "dpo": ("dpo", *(f"dpo_beta_{b:g}" for b in DPO_BETAS)), "bon": ("bon",)}
