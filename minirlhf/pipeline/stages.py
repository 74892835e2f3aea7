"""`Pipeline`: build or load any registered stage by name, in one setting.

    pipe = Pipeline()                    # setting from the environment (see settings.py)
    sft = pipe.model("sft")              # trains the base model first if it must, then SFT
    rm = pipe.model("reward")
    hist = pipe.log("rlhf_no_kl")["history"]

What a stage reads and where it comes from is in registry.py; how it is keyed and saved, in cache.py.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path

from ..pretrain import document_examples
from ..settings import PRESETS, Settings, get_settings
from ..tokenizer import build_tokenizer
from ..training import pick_device
from ..world import World
from . import cache
from .registry import STAGES, Source
from .threads import use_cpu_threads

# a rerun's seeds lie beyond every offset a stage adds to its seed: the registry's (up to 200: round 2) and the
# recipes' own (comparisons.py's resampling rounds add up to 3,000, reward.py and heldout.py up to 10), 3,210 at most
RERUN_STRIDE = 10_000


def default_home() -> Path:
    """MINIRLHF_HOME, else `runs/` of the source checkout, else ~/.cache/minirlhf. Always an absolute path: a
    relative MINIRLHF_HOME is taken from the folder this process is in, so that what it hands to a process that
    starts elsewhere (the grader's sandboxed kernel, in a submission's folder) names the same cache."""
    if os.environ.get("MINIRLHF_HOME"):
        return Path(os.environ["MINIRLHF_HOME"]).absolute()
    if (cache.PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return cache.PACKAGE_DIR.parent / "runs"
    return Path.home() / ".cache" / "minirlhf"


class Pipeline:
    """`repair=True` (the main job, `python -m minirlhf repair`): a damaged stage is moved aside and rebuilt,
    with every stage downstream of it that no longer matches; otherwise loading it is refused, with the
    command that repairs it (cache.py)."""

    def __init__(self, settings: Settings | str | None = None, out_dir=None, device=None, repair: bool = False,
                 rerun: int = 0):
        self.settings = settings if isinstance(settings, Settings) else get_settings(settings)
        if rerun < 0:
            raise ValueError(f"a rerun is a number ≥ 0 (0: the setting's own runs), got {rerun}")
        self.rerun = rerun
        self.out_dir = Path(out_dir) if out_dir else default_home() / self.settings.name
        cache.check_home(self.out_dir, write=False)   # a shared cache may be read-only: building needs writing
        self.repair = repair
        self.device = pick_device(device)
        self.threads = use_cpu_threads(self.device)   # see threads.py: MINIRLHF_THREADS, else cores − 1
        self.world = World(self.settings.world)   # the requests; the "world" stage saves its data sets
        self.tokenizer = build_tokenizer()
        self.built: list[str] = []          # stages this object trained (the rest were loaded)
        self.used: list[str] = []           # every stage this object built or loaded, upstream first
        self._paths: dict[str, Path] = {}
        self._keys: dict[str, str] = {}

    # -- the registry's stages -------------------------------------------------------------
    def _stage(self, name: str):
        if name not in STAGES:
            raise KeyError(f"no stage named {name!r}; registered stages: {', '.join(STAGES)}")
        return STAGES[name]

    def _inputs(self, name: str):
        """What stage `name` is keyed on: its setting values, its upstream stages' keys, its modules."""
        stage = self._stage(name)
        params = inspect.signature(stage.recipe).parameters
        upstream: dict[str, str] = {}
        settings = {arg: self._describe(source, upstream) for arg, source in stage.args.items()}
        if "seed" in params:
            settings["seed"] = self.seed_of(name)
        modules = [stage.recipe.__module__] + (["minirlhf.tokenizer"] if "tokenizer" in params else [])
        return settings, upstream, modules

    def seed_of(self, name: str) -> int:
        """The seed stage `name` trains with. A rerun other than 0 is the same world (its requests and data sets
        come from `settings.world`, which a rerun leaves alone) with every stage trained again from other random
        streams, the base model, SFT and the reward models too: how far a result moves from one training run to
        the next. Another machine moves it too (floating-point sums in another order set off another run), though
        less where no stage samples while it trains. Rerun 0 is the setting's own run."""
        return self.settings.seed + self._stage(name).seed_offset + RERUN_STRIDE * self.rerun

    def _describe(self, source, upstream: dict):
        """An argument's source as a keyable value; its upstream stages are added to `upstream`."""
        if isinstance(source, list):
            return [self._describe(s, upstream) for s in source]
        return source.describe(self, upstream) if isinstance(source, Source) else source

    def key(self, name: str) -> str:
        if name not in self._keys:
            self._keys[name] = cache.stage_key(*self._inputs(name))
        return self._keys[name]

    def stage_dir(self, name: str) -> Path:
        """The stage's folder, built first if it is not finished, and checked against its manifest (cache.py)."""
        if name not in self._paths:
            settings, upstream, modules = self._inputs(name)
            # upstream first (so that this stage's time is its own), and what it holds now
            content = {up: cache.content_digest(self.stage_dir(up)) for up in upstream}
            path, built = cache.build_or_load(self.out_dir, self._folder(name), settings, upstream, modules,
                                              lambda tmp: self._train(name, tmp), label=name,
                                              upstream_content=content, repair=self.repair,
                                              rebuild_hint=self.repair_hint(name))
            if built:
                self.built.append(name)
            self.used.append(name)
            self._paths[name] = path
        return self._paths[name]

    def repair_hint(self, name: str) -> str:
        """How to rebuild stage `name` of this pipeline: a command for the settings the command line can name."""
        preset = PRESETS.get(self.settings.name)
        if preset is not None and preset.with_seed(self.settings.seed) == self.settings:
            out = "" if self.out_dir == default_home() / self.settings.name else f" --out {self.out_dir}"
            if self.rerun:   # `repair` knows the setting's own runs only; the ledger repairs what it reads
                return (f"Rebuild it with: python -m minirlhf lessons --setting {self.settings.name} --seeds "
                        f"{self.settings.seed} --reruns {self.rerun}{out}")
            return (f"Rebuild it with: python -m minirlhf repair {name} --setting {self.settings.name} "
                    f"--seed {self.settings.seed}{out}")
        return f"Rebuild it with: Pipeline(<these settings>, {str(self.out_dir)!r}, repair=True).stage_dir({name!r})"

    def _folder(self, name: str) -> str:
        return self._stage(name).recipe.__name__.removesuffix("_stage")

    def path(self, name: str) -> Path:
        """Where stage `name` lives in the cache, built or not."""
        return cache.stage_path(self.out_dir, self._folder(name), self.key(name))

    def _train(self, name: str, tmp: Path) -> dict:
        stage = self._stage(name)
        params = inspect.signature(stage.recipe).parameters
        kwargs = {arg: self._resolve(source) for arg, source in stage.args.items()}
        # passed to every recipe that takes them; the seed is keyed, the tokenizer by its module, the
        # device and the progress bar's label (`desc`) change nothing a stage learns
        implicit = {"tokenizer": self.tokenizer, "seed": self.seed_of(name),
                    "device": self.device, "desc": name}
        kwargs.update({k: v for k, v in implicit.items() if k in params})
        return cache.save_artifacts(tmp, stage.recipe(**kwargs))

    def _resolve(self, source):
        """An argument's value. What a recipe receives is in no stage's key: change how a source is
        loaded (registry.Source.load, or cache.save_artifacts/load_artifact) and bump cache.CACHE_VERSION."""
        if isinstance(source, list):
            return [self._resolve(s) for s in source]
        return source.load(self) if isinstance(source, Source) else source

    def artifact(self, name: str, artifact: str = "model"):
        """Something stage `name` saved: "model", or e.g. "comparisons", "value_model", "data" (a fresh copy)."""
        return cache.load_artifact(self.stage_dir(name), artifact, self.device)

    def model(self, name: str):
        """The model stage `name` trained (a GPT, or a RewardModel for the reward stages): a fresh copy."""
        return self.artifact(name, "model")

    def log(self, name: str) -> dict:
        """The stage's log: losses or history, accuracies, and `seconds` (its own training time)."""
        if not isinstance(name, str):
            raise TypeError(f"log() takes a stage name such as 'sft', not {name!r}")
        return json.loads((self.stage_dir(name) / "log.json").read_text())

    def history(self, name: str) -> list[dict]:
        """The per-step log of an RL stage."""
        log = self.log(name)
        if "history" not in log:
            raise KeyError(f"stage {name!r} logs no per-step history (it has {sorted(log)}): history() is for "
                           "RL stages such as 'rlhf'")
        return log["history"]

    # -- the world -------------------------------------------------------------------------
    def datasets(self):
        """Every split of the world as a DatasetDict (the "world" stage)."""
        return self.artifact("world", "data")

    def requests(self, split: str):
        return self.world.requests[split]

    def heldout_internet_examples(self):
        """Internet text about held-out prompts, never trained on: for the alignment tax."""
        texts = self.world.internet_heldout(self.settings.eval.n_heldout_docs)["text"]
        return document_examples(self.tokenizer, texts, self.settings.model.block_size)

    # -- the names of the previous release, kept for exercises already handed out ------------
    def _deprecated(self, old: str, new: str):
        warnings.warn(f"pipe.{old} is deprecated and will be removed in the next release: use pipe.{new}",
                      FutureWarning, stacklevel=3)

    def base_model(self):
        self._deprecated("base_model()", 'model("base")')
        return self.model("base")

    def sft_model(self):
        self._deprecated("sft_model()", 'model("sft")')
        return self.model("sft")

    def reward_model(self, labeler: str = "gold"):
        name = "reward" if labeler == "gold" else f"reward_{labeler}"
        self._deprecated(f"reward_model({labeler!r})", f"model({name!r})")
        return self.model(name)
