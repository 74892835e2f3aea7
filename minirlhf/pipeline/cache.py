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

Each folder has a manifest: the SHA-256 of every file it holds, and of the upstream stages it was built
from. Loading checks both. A damaged stage (a file changed, truncated or deleted) or one built from an
upstream that has changed since is refused with a message that names the stage, the file and the command
that rebuilds it; in `repair` mode (what `python -m minirlhf run` and `repair` use) it is moved aside to
`<home>/damaged/` and rebuilt, and so is every stage downstream whose upstream no longer matches.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
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
CACHE_VERSION = 3   # bump when the folder layout changes: every key changes with it


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
    return _imports(module, module_file(module).name == "__init__.py", read_source(module))


@lru_cache(maxsize=1024)
def _imports(module: str, is_package: bool, source: bytes) -> frozenset[str]:
    """package_imports, computed once per distinct source (keys are computed many times)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(_syntax(source)):
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
    return frozenset(m for m in found if _exists(m))


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
    return _tree_hash(read_source(module))


@lru_cache(maxsize=1024)
def _tree_hash(source: bytes) -> str:
    return hashlib.sha256(ast.dump(_syntax(source)).encode()).hexdigest()


def stage_key(settings: dict, upstream: dict[str, str], modules) -> str:
    """A short hash of what a stage reads: setting values, upstream keys (not their names: two stages
    that read the same things share a key whatever they are called) and its modules' code."""
    sources = {m: code_hash(m) for m in module_closure(modules)}
    blob = json.dumps({"version": CACHE_VERSION, "settings": _plain(settings), "upstream": sorted(upstream.values()),
                       "sources": sources}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# -- what a stage holds: its manifest -----------------------------------------------------------

MANIFEST, LOG = "manifest.json", "log.json"


class DamagedStage(RuntimeError):
    """A finished stage whose files are not what it saved, or that was built from another upstream."""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[str]:
    """The files a stage saved, as paths inside its folder (lock files and the manifest left out)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def write_manifest(folder: Path, upstream: dict[str, str]) -> None:
    """Record the checksum of every file of `folder` and the content of the upstream stages it read."""
    manifest = {"files": {f: file_digest(folder / f) for f in _files(folder)}, "upstream": upstream}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def content_digest(folder: Path) -> str:
    """What downstream stages read of a stage: its files but the log (whose times change on every rebuild).
    A stage rebuilt bit for bit has the same digest, so its downstream stages stay valid."""
    files = json.loads((Path(folder) / MANIFEST).read_text())["files"]
    return hashlib.sha256(json.dumps({f: d for f, d in files.items() if f != LOG}, sort_keys=True).encode()).hexdigest()


_sound: dict[str, tuple] = {}   # folders found sound in this process, with the sizes and times of their files


def damage(path: Path, upstream: dict[str, str]) -> str | None:
    """What is wrong with a finished stage folder (None: nothing). `upstream`: the content digest of each
    stage it reads, as the cache holds them now."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        json.loads((path / LOG).read_text())
        files = manifest["files"]
    except FileNotFoundError as e:
        return f"{Path(e.filename).name} is missing"
    except (ValueError, KeyError, TypeError):   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"{MANIFEST} or {LOG} is not what the stage wrote (truncated or overwritten)"
    stamp = (tuple((f, (path / f).stat().st_size, (path / f).stat().st_mtime_ns) for f in files
                   if (path / f).is_file()), tuple(sorted(upstream.items())))
    if _sound.get(str(path)) == stamp:
        return None
    for f, digest in files.items():
        if not (path / f).is_file():
            return f"{f} is missing"
        if file_digest(path / f) != digest:
            return f"{f} is not the file the stage saved (its checksum differs: changed or truncated)"
    for name, digest in upstream.items():
        if manifest.get("upstream", {}).get(name) != digest:
            return f"it was built from another {name!r} than the one in the cache now (rebuilt since)"
    _sound[str(path)] = stamp
    return None


# -- building and loading ----------------------------------------------------------------------

def stage_path(home: Path, name: str, key: str) -> Path:
    return Path(home) / f"{name}-{key}"


def is_finished(path: Path) -> bool:
    return (Path(path) / LOG).is_file()


def check_code_unchanged(modules) -> None:
    """Refuse to train when a module's file changed after this process imported the package: the stage
    would be trained by the old code in memory but keyed (and found again later) under the new."""
    from .. import IMPORTED_AT

    for m in module_closure(modules):
        if m in sys.modules and module_file(m).stat().st_mtime > IMPORTED_AT:
            raise RuntimeError(f"{module_file(m)} changed after this Python process imported minirlhf: restart "
                               "the kernel (or the run) so that the stage is trained by the code it is keyed on")


def check_home(home: Path, write: bool = True) -> None:
    """Make sure `home` is a folder (created if need be) the cache can write in, or, with write=False, at least
    read (a class's shared cache, read-only); else raise a ValueError that says why not."""
    home = Path(home)
    if home.exists() and not home.is_dir():
        raise ValueError(f"the run folder {home} is a file: give a folder (--out DIR or MINIRLHF_HOME)")
    if home.is_dir() and not write:
        return
    try:
        home.mkdir(parents=True, exist_ok=True)
        if write:
            tempfile.TemporaryFile(dir=home).close()
    except OSError as e:
        raise ValueError(f"cannot write in the run folder {home} ({e.strerror}): give a folder you can write to "
                         "(--out DIR or MINIRLHF_HOME)") from None


def remove_leftovers(home: Path) -> list[Path]:
    """Remove the temporary folders of runs that were killed (kill -9, a power cut): those of every stage
    whose lock is free, so that the work of a run still going is never deleted. Returns what it removed."""
    removed = []
    for lock_file in Path(home).glob(".*.lock"):
        try:
            lock = open(lock_file, "a")
        except OSError:   # someone else's cache, shared read-only: not ours to clean
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue   # a run is building this stage now
            removed += _remove_temporaries(Path(home), lock_file.stem)
    return removed


def _remove_temporaries(home: Path, stem: str) -> list[Path]:
    """The temporary folders `.<stage>.*` of one stage (call with its lock held)."""
    leftovers = [p for p in home.glob(f"{stem}.*") if p.is_dir()]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    return leftovers


def build_or_load(home: Path, name: str, settings: dict, upstream: dict[str, str], modules,
                  build: Callable[[Path], dict], label: str = "", upstream_content: dict[str, str] | None = None,
                  repair: bool = False, rebuild_hint: str = "") -> tuple[Path, bool]:
    """The stage folder `<home>/<name>-<key>`, keyed on `settings`, `upstream` (name -> key of each stage
    it reads) and `modules`, and whether it was built now. `build(tmp_folder) -> log dict` writes the
    stage's files; the log gets `seconds` (this stage's own training time) and is saved as log.json, the
    mark of a finished stage. `label` names the stage in messages.

    `upstream_content` (name -> content_digest of each upstream folder) is recorded in the manifest and
    checked when the stage is loaded. A damaged stage raises DamagedStage (ending with `rebuild_hint`),
    or with `repair` is moved to `<home>/damaged/` and rebuilt."""
    label = label or name
    upstream_content = upstream_content or {}
    path = stage_path(home, name, stage_key(settings, upstream, modules))
    problem = damage(path, upstream_content) if is_finished(path) else None
    if is_finished(path) and problem is None:
        return path, False
    def refused(problem: str) -> DamagedStage:
        return DamagedStage(f"stage {label!r} at {path} is damaged: {problem}. {rebuild_hint}".rstrip())

    if problem and not repair:
        raise refused(problem)
    check_code_unchanged(modules)
    try:   # a read-only cache (a class's, shared) serves the stages it has; this one it has not
        check_home(path.parent)
    except ValueError as e:
        raise ValueError(f"stage {label!r} must be built, but {e}") from None
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a concurrent run building this stage: wait for it
        if is_finished(path):
            problem = damage(path, upstream_content)   # a concurrent run may have built or rebuilt it
            if problem is None:
                return path, False
            if not repair:
                raise refused(problem)
            aside = path.parent / "damaged" / path.name
            shutil.rmtree(aside, ignore_errors=True)
            aside.parent.mkdir(exist_ok=True)
            path.rename(aside)
            print(f"[minirlhf] stage {label} was damaged ({problem}): moved to {aside}, rebuilding it")
        _remove_temporaries(path.parent, f".{path.name}")   # a killed run's temporary folders
        print(f"[minirlhf] training {label} (saved to {path})")
        with atomic_dir(path) as tmp:
            start = time.time()
            log = build(tmp)
            log["seconds"] = time.time() - start
            log["threads"] = torch.get_num_threads()   # the last digits of results depend on it
            (tmp / LOG).write_text(json.dumps(log))
            write_manifest(tmp, upstream_content)
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
