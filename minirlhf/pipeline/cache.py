"""The stage cache: each stage is trained once per key, and loaded from then on.

A stage lives in `<home>/<setting>/<folder>-<key>/`. The key hashes exactly what the stage reads:
  * the values of the settings and other fixed arguments it is given (e.g. its PPOConfig);
  * the keys of its upstream stages, so a change upstream retrains everything downstream;
  * the code of the package modules its recipe imports, followed import by import (editing
    ppo.py retrains the PPO stages; it does not retrain pretraining). Code means the syntax tree,
    docstrings included: a comment or a reformatted line retrains nothing.
Two stages that read the same things share one folder, so a run needed by the main job and by a
notebook is trained once. A folder is written under a temporary name and renamed into place when
finished, while a lock (fcntl.flock, released by the kernel even on kill -9) keeps a second run from
training the same stage at the same time: it waits, then loads.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset, DatasetDict, load_from_disk

from ..checkpoint import SavesPretrained, atomic_dir

PACKAGE = "minirlhf"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
CACHE_VERSION = 2   # bump when the folder layout changes: every key changes with it


# -- what a stage reads ------------------------------------------------------------------------

def module_file(module: str) -> Path:
    """The file that holds a module: `minirlhf.rlhf` in the package, or any other imported module (a
    recipe may live outside the package; it is then keyed on its own file and the package modules it
    imports, so keep its helpers in that file)."""
    if module.split(".")[0] != PACKAGE:
        source = getattr(sys.modules.get(module), "__file__", None)
        if module == "__main__" and source is None:
            raise ValueError("a stage's recipe must live in a .py file the cache can read, not in a notebook "
                             "cell: move it to a module, or call the recipe yourself without the cache")
        if source is None:
            raise ValueError(f"cannot find the source of module {module!r}: import it from a .py file first")
        return Path(source)
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def read_source(module: str) -> bytes:
    return module_file(module).read_bytes()


@lru_cache(maxsize=512)
def _syntax(source: bytes) -> ast.Module:
    """A module's syntax tree, parsed once per distinct source (keys are computed many times)."""
    return ast.parse(source)


def package_imports(module: str) -> set[str]:
    """The package modules that `module` imports (relative or absolute), as `minirlhf.x.y` names."""
    is_package = module_file(module).name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(_syntax(read_source(module))):
        if isinstance(node, ast.ImportFrom):
            base = (here[:len(here) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = [p for p in base if p]
            if base[:1] != [PACKAGE]:
                continue
            for alias in node.names:   # `from . import ppo` imports a module, `from .ppo import x` a name
                candidate = ".".join(base + [alias.name])
                found.add(candidate if _exists(candidate) else ".".join(base))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    return module.split(".")[0] == PACKAGE and module_file(module).is_file()


def module_closure(modules) -> list[str]:
    """Every package module the given ones import, directly or through others (themselves included)."""
    todo = list(modules)
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(package_imports(m) - seen)
    return sorted(seen)


def _plain(value):
    """Settings and arguments as JSON: dataclasses by their fields."""
    if is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **{k: _plain(v) for k, v in asdict(value).items()}}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot key a stage on {value!r} ({type(value).__name__}): pass settings, numbers, "
                    "strings or lists of them, and everything else as an upstream stage")


def code_hash(module: str) -> str:
    """The module's syntax tree, hashed: comments and layout do not count, docstrings do."""
    return hashlib.sha256(ast.dump(_syntax(read_source(module))).encode()).hexdigest()


def stage_key(settings: dict, upstream: dict[str, str], modules) -> str:
    """A short hash of what a stage reads: setting values, upstream keys (not their names: two stages
    that read the same things share a key whatever they are called) and its modules' code."""
    sources = {m: code_hash(m) for m in module_closure(modules)}
    blob = json.dumps({"version": CACHE_VERSION, "settings": _plain(settings), "upstream": sorted(upstream.values()),
                       "sources": sources}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# -- building and loading ----------------------------------------------------------------------

def is_finished(path: Path) -> bool:
    return (Path(path) / "log.json").is_file()


def check_code_unchanged(modules) -> None:
    """Refuse to train when a module's file changed after this process imported the package: the stage
    would be trained by the old code in memory but keyed (and found again later) under the new."""
    from .. import IMPORTED_AT

    for m in module_closure(modules):
        if m in sys.modules and module_file(m).stat().st_mtime > IMPORTED_AT:
            raise RuntimeError(f"{module_file(m)} changed after this Python process imported minirlhf: restart "
                               "the kernel (or the run) so that the stage is trained by the code it is keyed on")


def build_or_load(home: Path, name: str, settings: dict, upstream: dict[str, str], modules,
                  build: Callable[[Path], dict], label: str = "") -> tuple[Path, bool]:
    """The stage folder `<home>/<name>-<key>`, keyed on `settings`, `upstream` (name -> key of each stage
    it reads) and `modules`, and whether it was built now. `build(tmp_folder) -> log dict` writes the
    stage's files; the log gets `seconds` (this stage's own training time) and is saved as log.json, the
    mark of a finished stage. `label` names the stage in the progress message."""
    path = Path(home) / f"{name}-{stage_key(settings, upstream, modules)}"
    if is_finished(path):
        return path, False
    check_code_unchanged(modules)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a concurrent run building this stage: wait for it
        if is_finished(path):
            return path, False
        for leftover in path.parent.glob(f".{path.name}.*"):   # a killed run's temporary folders
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        print(f"[minirlhf] training {label or name} (saved to {path})")
        with atomic_dir(path) as tmp:
            start = time.time()
            log = build(tmp)
            log["seconds"] = time.time() - start
            log["threads"] = torch.get_num_threads()   # the last digits of the results depend on it
            (tmp / "log.json").write_text(json.dumps(log))
    return path, True


def save_artifacts(folder: Path, outputs: dict) -> dict:
    """Save what a recipe returned: models with save_pretrained, data sets with save_to_disk; returns
    the "log" entry (a dict, saved by build_or_load)."""
    log = dict(outputs.get("log", {}))
    for name, value in outputs.items():
        if name == "log":
            continue
        if isinstance(value, SavesPretrained):
            value.save_pretrained(folder / name)
        elif isinstance(value, (Dataset, DatasetDict)):
            value.save_to_disk(str(folder / name))
        else:
            raise TypeError(f"a recipe returned {name}={type(value).__name__}: return models, data sets "
                            "and a 'log' dict")
    return log


def load_artifact(folder: Path, name: str, device):
    """A model (by the model_type in its config.json) or a data set saved by `save_artifacts`."""
    from ..best_of_n import BestOfN
    from ..model import GPT
    from ..reward import RewardModel

    path = Path(folder) / name
    if (path / "config.json").is_file():
        kind = json.loads((path / "config.json").read_text()).get("model_type")
        cls = {c.model_type: c for c in (GPT, RewardModel, BestOfN)}.get(kind)
        if cls is None:
            raise ValueError(f"{path} holds a model of type {kind!r}, which this version cannot load")
        return cls.from_pretrained(path, device)
    if path.is_dir():
        return load_from_disk(str(path))
    present = sorted(p.name for p in Path(folder).iterdir() if p.name != "log.json" and not p.name.startswith("."))
    raise FileNotFoundError(f"stage folder {folder} has no {name!r}: ask for one of {present} (a stage saves "
                            "what its recipe returns, under the names it returns)")
