"""What crosses between the grader and a submission's kernel: JSON and safetensors, never pickle.

A value is encoded as a JSON tree plus a safetensors blob holding its tensors; tuples, dicts and floats
that JSON cannot hold (NaN, ±inf) are tagged, and so is whether a tensor requires a gradient. A linear
layer (a check hands the student a reward head) crosses as its weights. Anything else the kernel has (a student's function, a class,
a model) crosses as a handle: a number that names the object inside the kernel. Decoding on the grader's
side turns a handle into whatever `opaque(handle, type_name)` builds (a proxy, see remote.py), so no
object of the student's ever exists in the grader's process: only numbers, strings and plain tensors.
"""
from __future__ import annotations

import base64
import json
import math

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

MAX_BYTES = 64 * 2 ** 20   # a reply larger than this is refused (a check's outputs are a few kB)


def encode(value, handle=None) -> str:
    """`value` as one ASCII string. `handle(obj) -> int` names objects that are not data (the kernel's
    side); without it such an object is an error (the grader sends only data and handles)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x):
        if isinstance(x, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = x.detach().cpu().contiguous().clone()
            return {"__tensor__": key, "grad": bool(x.requires_grad)}
        if type(x) is torch.nn.Linear:
            return {"__linear__": {"weight": walk(x.weight), "bias": walk(x.bias) if x.bias is not None else None}}
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return x
        if isinstance(x, int):
            return x
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {"__float__": repr(float(x))}   # numpy's too
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict) and all(isinstance(k, str) for k in x):
            return {"__dict__": {k: walk(v) for k, v in x.items()}}
        if isinstance(x, Handle):
            return {"__handle__": x.number, "type": x.type_name}
        if handle is None:
            raise TypeError(f"cannot send a {type(x).__name__} to a kernel")
        return {"__handle__": handle(x), "type": type(x).__name__}

    tree = walk(value)
    blob = save_tensors(tensors) if tensors else b""
    return json.dumps({"tree": tree, "tensors": base64.b64encode(blob).decode()})


def decode(text: str, opaque=None):
    """The value `encode` wrote; handles become `opaque(number, type_name)` (default: a Handle)."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"a reply of {len(text)} bytes (the limit is {MAX_BYTES})")
    message = json.loads(text)
    blob = base64.b64decode(message["tensors"])
    tensors = load_tensors(blob) if blob else {}
    opaque = opaque or Handle

    def walk(x):
        if isinstance(x, list):
            return [walk(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__tensor__" in x:
            t = tensors[x["__tensor__"]]
            return t.requires_grad_() if x.get("grad") and t.is_floating_point() else t
        if "__linear__" in x:
            weight, bias = walk(x["__linear__"]["weight"]), walk(x["__linear__"]["bias"])
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            with torch.no_grad():
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)
            return layer
        if "__float__" in x:
            return float(x["__float__"])
        if "__tuple__" in x:
            return tuple(walk(v) for v in x["__tuple__"])
        if "__dict__" in x:
            return {str(k): walk(v) for k, v in x["__dict__"].items()}
        if "__handle__" in x:
            return opaque(int(x["__handle__"]), str(x.get("type", "object")))
        raise ValueError(f"not a value of this protocol: {str(x)[:80]}")

    return walk(message["tree"])


class Handle:
    """An object that stays in the kernel, named by a number."""
    def __init__(self, number: int, type_name: str = "object"):
        self.number, self.type_name = number, type_name
