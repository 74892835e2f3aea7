"""Saving and loading checkpoints: a JSON config beside safetensors weights, written atomically.

A folder is first written under a temporary name and then renamed into place, so a crash or a
full disk never leaves a half-written checkpoint where `from_pretrained` would find it. The swap
(old folder out, new one in) holds a lock that readers share, so a reader never finds the folder
missing, nor half of an old and half of a new one, while another process saves over it.
Loading refuses a file that is not what `save_pretrained` wrote: unreadable JSON, truncated
weights, NaN or infinite weights.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1  # bump when the saved layout changes; older folders are then refused


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def swap_lock(path: Path, exclusive: bool):
    """The lock of `path`'s swap: exclusive for the writer that renames, shared for readers."""
    lock = path.parent / f".{path.name}.swap"
    if not exclusive and not lock.is_file():   # never swapped: saved once (or by an older version), or absent
        yield
        return
    with open(lock, "a" if exclusive else "r") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp's folder is private (0700); a saved one is not
    try:
        yield tmp
        old = tmp.with_name(f"{tmp.name}.old")   # unique: two writers never rename onto the same name
        with swap_lock(path, exclusive=True):
            if path.exists():
                path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:
                if old.exists():
                    old.rename(path)   # put the previous save back
                raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(path, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_dir(path) as tmp:
        with open(tmp / "config.json", "w") as f:
            json.dump({**config, "format_version": FORMAT_VERSION}, f, indent=2)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                  str(tmp / "model.safetensors"))


def load_checkpoint(path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a folder written by `save_checkpoint`; `kind` is the expected `model_type`."""
    path = Path(path)
    with swap_lock(path, exclusive=False):   # not while another process swaps a new save in
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no checkpoint at {path}: expected config.json and model.safetensors written by "
                "save_pretrained; check the path")
        try:
            config = json.loads((path / "config.json").read_text())
            tensors = load_file(str(path / "model.safetensors"))
        except (ValueError, OSError, SafetensorError) as e:   # JSONDecodeError is a ValueError
            raise ValueError(f"checkpoint at {path} is unreadable (truncated or overwritten?): {e}. "
                             "Save it again (a pipeline stage: python -m minirlhf repair)") from None
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION or config.get("model_type") != kind:
        found = config if not isinstance(config, dict) else f"a {config.get('model_type')!r} of format {config.get('format_version')!r}"
        raise ValueError(
            f"checkpoint at {path} is {found}; expected a {kind!r} of format {FORMAT_VERSION}. "
            "It was written by another version of minirlhf: delete the folder and retrain")
    broken = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise ValueError(f"checkpoint at {path} has NaN or infinite weights in {broken[:3]}"
                         f"{' and more' if len(broken) > 3 else ''}: it is damaged (or its training diverged); "
                         "save it again from a sound model")
    config.pop("format_version")
    config.pop("model_type")
    return config, tensors


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path, tied: set[str]) -> None:
    """Load `tensors` into `model`; `tied` names weights that are saved once under another name."""
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or set(missing) - tied:
        raise ValueError(f"checkpoint at {path} does not match its config: missing "
                         f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")


class SavesPretrained:
    """`save_pretrained` / `from_pretrained` (the transformers convention) for our modules.

    A subclass sets `model_type` (checked on load), `config_class` (the dataclass it is built
    from, kept in config.json) and `tied_weight`: the output layer that shares the token
    embedding when `config.tie_weights`, saved once under the embedding's name.
    """
    model_type: str
    config_class: type
    tied_weight: str

    def _tied(self) -> set[str]:
        return {self.tied_weight} if self.config.tie_weights else set()

    def save_pretrained(self, path) -> None:
        tied = self._tied()
        save_checkpoint(path, {"model_type": self.model_type, **asdict(self.config)},
                        {k: v for k, v in self.state_dict().items() if k not in tied})

    @classmethod
    def from_pretrained(cls, path, device="cpu"):
        config, tensors = load_checkpoint(path, cls.model_type)
        model = cls(cls.config_class(**config))
        load_weights(model, tensors, path, model._tied())
        return model.to(device)
