"""The stage cache: base → SFT → reward model → RLHF, each trained once and reused.

    pipe = Pipeline()                 # setting from the environment (see settings.py)
    sft = pipe.sft_model()            # trains the base model first if it must, then SFT
    rm = pipe.reward_model()

A stage lives in `<home>/<setting>/<stage>-<key>/`, where the key hashes the stage's settings,
those of every stage before it, and the package's source: change anything upstream and the
stage is retrained; change nothing and it is loaded. Each folder is written atomically, so a
run interrupted between stages resumes from the last finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from datasets import DatasetDict, load_from_disk

from .checkpoint import atomic_dir
from .comparisons import collect_comparisons
from .evaluate import sample_responses
from .labelers import PERSONAS
from .model import GPT
from .pretrain import document_examples, pretrain
from .reward import RewardModel, encode_dialogues, pairwise_accuracy, train_reward_model
from .rlhf import train_ppo, value_model_from_reward_model
from .settings import Settings, get_settings
from .sft import sft
from .tokenizer import build_tokenizer
from .training import pick_device, set_seed
from .world import World

PACKAGE_DIR = Path(__file__).resolve().parent


def default_home() -> Path:
    """MINIRLHF_HOME, else `runs/` of the source checkout, else ~/.cache/minirlhf."""
    if os.environ.get("MINIRLHF_HOME"):
        return Path(os.environ["MINIRLHF_HOME"])
    if (PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return PACKAGE_DIR.parent / "runs"
    return Path.home() / ".cache" / "minirlhf"


# the modules whose code decides what a stage trains: editing one of them retrains the stages
TRAINING_MODULES = ("world", "tokenizer", "labelers", "model", "generate", "logprobs", "training", "pretrain",
                    "sft", "comparisons", "evaluate", "reward", "kl", "ppo", "rlhf", "checkpoint", "pipeline")


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in TRAINING_MODULES:
        h.update((PACKAGE_DIR / f"{name}.py").read_bytes())
    return h.hexdigest()[:12]


class Pipeline:
    def __init__(self, settings: Settings | str | None = None, out_dir=None, device=None):
        self.settings = settings if isinstance(settings, Settings) else get_settings(settings)
        self.out_dir = Path(out_dir) if out_dir else default_home() / self.settings.name
        self.device = pick_device(device)
        self.world = World(self.settings.world)
        self.tokenizer = build_tokenizer()
        self._source = _source_hash()
        self._cache: dict[str, object] = {}

    # -- bookkeeping ------------------------------------------------------------------
    def _key(self, *parts) -> str:
        blob = json.dumps([self._source, self.settings.seed, *[asdict(p) if hasattr(p, "__dataclass_fields__")
                                                               else p for p in parts]], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def stage_dir(self, stage: str, labeler: str = "gold") -> Path:
        keys = {"world": (self.settings.world,),
                "base": (self.settings.world, self.settings.model, self.settings.pretrain),
                "sft": (self.settings.world, self.settings.model, self.settings.pretrain, self.settings.sft)}
        keys["reward"] = keys["sft"] + (self.settings.reward,)
        if stage == "reward" and labeler != "gold":
            return self.out_dir / f"reward-{labeler}-{self._key(*keys[stage], labeler)}"
        return self.out_dir / f"{stage}-{self._key(*keys[stage])}"

    def log(self, stage_path: Path) -> dict:
        return json.loads((Path(stage_path) / "log.json").read_text())

    def _build(self, path: Path, train) -> None:
        """Run `train(tmp_folder) -> log dict` unless `path` is finished; write it atomically."""
        if (path / "log.json").is_file():
            return
        print(f"[minirlhf] training {path.name} (saved to {path})")
        start = time.time()
        with atomic_dir(path) as tmp:
            log = train(tmp)
            log["seconds"] = time.time() - start
            (tmp / "log.json").write_text(json.dumps(log))

    # -- the world ----------------------------------------------------------------------
    def datasets(self) -> DatasetDict:
        """Every split of the world as a DatasetDict, cached to disk."""
        path = self.stage_dir("world")

        def build(tmp):
            self.world.to_dataset_dict().save_to_disk(str(tmp / "data"))
            return {}

        self._build(path, build)
        return load_from_disk(str(path / "data"))

    def requests(self, split: str):
        return self.world.requests[split]

    # -- the stages ---------------------------------------------------------------------
    def base_model(self) -> GPT:
        path = self.stage_dir("base")

        def train(tmp):
            set_seed(self.settings.seed)
            cfg = replace(self.settings.model, vocab_size=len(self.tokenizer))
            model = GPT(cfg).to(self.device)
            losses = pretrain(model, self.tokenizer, self.datasets()["internet"]["text"],
                              self.settings.pretrain, self.settings.seed)
            model.save_pretrained(tmp / "model")
            return {"losses": losses, "n_params": model.num_parameters()}

        self._build(path, train)
        return GPT.from_pretrained(path / "model", self.device)

    def sft_model(self) -> GPT:
        path = self.stage_dir("sft")

        def train(tmp):
            model = self.base_model()
            demos = self.datasets()["demonstrations"]
            losses = sft(model, self.tokenizer, demos["prompt"], demos["response"], self.settings.sft,
                         self.settings.seed)
            model.save_pretrained(tmp / "model")
            return {"losses": losses}

        self._build(path, train)
        return GPT.from_pretrained(path / "model", self.device)

    def reward_model(self, labeler: str = "gold") -> RewardModel:
        """Initialised from SFT; trained on rankings of SFT samples by one labeler persona
        (labelers.PERSONAS; "gold" is the average person); normalised so SFT samples on the RL
        prompts score mean 0, std 1."""
        path = self.stage_dir("reward", labeler)
        cfg, ev, seed = self.settings.reward, self.settings.eval, self.settings.seed

        def train(tmp):
            sft_model = self.sft_model()
            persona = PERSONAS[labeler]
            # the RL prompts are ranked too: the reward model must be right where PPO will look
            train_cmp = collect_comparisons(sft_model, self.tokenizer, self.requests("reward") + self.requests("rl"),
                                            cfg.n_rankings,
                                            cfg.k, persona, ev.max_new_tokens, seed)
            test_cmp = collect_comparisons(sft_model, self.tokenizer, self.requests("eval"),
                                           len(self.requests("eval")), cfg.k, persona, ev.max_new_tokens, seed + 1)
            set_seed(seed)
            rm = RewardModel.from_language_model(sft_model)
            losses = train_reward_model(rm, self.tokenizer, train_cmp, cfg, seed)
            rows = sample_responses(sft_model, self.tokenizer, self.requests("rl"), 2,
                                    ev.max_new_tokens, seed=seed + 2)
            ids, attn = encode_dialogues(self.tokenizer, [r["prompt"] for r in rows],
                                         [r["response"] for r in rows], [r["ended"] for r in rows])
            with torch.no_grad():
                rm.set_normalization(rm.raw_score(ids.to(self.device), attn.to(self.device)))
            rm.save_pretrained(tmp / "model")
            train_cmp.save_to_disk(str(tmp / "comparisons"))
            test_cmp.save_to_disk(str(tmp / "comparisons_heldout"))
            return {"losses": losses, "train": pairwise_accuracy(rm, self.tokenizer, train_cmp),
                    "heldout": pairwise_accuracy(rm, self.tokenizer, test_cmp)}

        self._build(path, train)
        return RewardModel.from_pretrained(path / "model", self.device)

    def comparisons(self, split: str = "train", labeler: str = "gold"):
        """The ranked comparisons the reward model was trained on ("train") or tested on ("heldout")."""
        self.reward_model(labeler)
        name = "comparisons" if split == "train" else "comparisons_heldout"
        return load_from_disk(str(self.stage_dir("reward", labeler) / name))

    def rlhf_dir(self, **ppo_overrides) -> Path:
        cfg = replace(self.settings.ppo, **ppo_overrides)
        tag = "rlhf" if not ppo_overrides else "rlhf-" + "-".join(f"{k}{v}" for k, v in sorted(ppo_overrides.items()))
        return self.out_dir / f"{tag}-{self._key(self.stage_dir('reward').name, cfg)}"

    def rlhf_model(self, **ppo_overrides) -> GPT:
        """PPO from the SFT model against the reward model. Keyword arguments override PPOConfig
        fields, e.g. `rlhf_model(kl_coef=0.0)` for the run without a KL penalty."""
        path = self.rlhf_dir(**ppo_overrides)
        cfg = replace(self.settings.ppo, **ppo_overrides)

        def train(tmp):
            policy, ref = self.sft_model(), self.sft_model()
            rm = self.reward_model()
            ptx = None
            if cfg.ptx_coef > 0:
                ptx = document_examples(self.tokenizer, self.datasets()["internet"]["text"][:5000],
                                        policy.config.block_size)
            history = train_ppo(policy, ref, rm, value_model_from_reward_model(rm), self.tokenizer,
                                self.requests("rl"), cfg, self.settings.seed, ptx_examples=ptx)
            policy.save_pretrained(tmp / "model")
            return {"history": history, "ppo": asdict(cfg)}

        self._build(path, train)
        return GPT.from_pretrained(path / "model", self.device)

    def rlhf_history(self, **ppo_overrides) -> list[dict]:
        self.rlhf_model(**ppo_overrides)
        return self.log(self.rlhf_dir(**ppo_overrides))["history"]

    def heldout_internet_examples(self):
        """Internet text about held-out prompts, never trained on: for the alignment tax."""
        texts = self.world.internet_heldout(self.settings.eval.n_heldout_docs)["text"]
        return document_examples(self.tokenizer, texts, self.settings.model.block_size)
