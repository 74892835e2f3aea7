"""The grader's end of a submission's kernel: the student's objects as proxies the checks can call.

A `Remote` stands for an object that lives in the kernel (a function, a class, an instance, a model).
Calling it, or reading one of its attributes, sends a request to `worker.serve` in the kernel and waits
for the answer, which comes back as plain data (wire.py). The checks run unchanged on proxies: `gae(...)`
on a proxy is the student's gae run in their kernel on the check's inputs, with the answer judged here.
"""
from __future__ import annotations

import time

import nbformat
import torch

from .wire import Handle, decode, encode
from .worker import MIME


class StudentError(Exception):
    """The student's code raised in the kernel."""
    def __init__(self, type_name: str, message: str, where: str):
        super().__init__(f"{type_name}: {message}" + (f" ({where})" if where else ""))
        self.type_name = type_name


class ReferenceUsed(Exception):
    """The student's code called the package's reference of the exercise being checked."""


class KernelGone(Exception):
    """The kernel died, or gave no answer in time."""


def run_cell(client, cell, seconds: float) -> None:
    """Run a cell of the grader's own (not the student's) in the kernel within `seconds`: nbclient looks a
    cell up by its index in the notebook, so it is appended, run, and taken out again. Raises what nbclient
    raises (a time-out, a dead kernel); the cell's outputs are in `cell.outputs`."""
    cells = client.nb.cells
    client.timeout = max(1, int(seconds))
    cells.append(cell)
    try:
        client.execute_cell(cell, len(cells) - 1, store_history=False)
    finally:
        cells.remove(cell)


class Kernel:
    """Requests to `worker.serve` through a started nbclient client, each within `seconds_left()`."""

    def __init__(self, client, seconds_left):
        self.client, self.seconds_left = client, seconds_left
        self.exercise = ""   # the exercise being checked: its references are tripwires while it runs

    def request(self, **message):
        left = self.seconds_left()
        if left <= 0:
            raise KernelGone("no time was left for the checks")
        cell = nbformat.v4.new_code_cell(
            f"import minirlhf.course.worker as _grader\n_grader.serve({encode(message)!r})")
        start = time.monotonic()
        # twice at most: the interrupt that stopped a notebook at its time limit reaches the kernel when it
        # does, and on a busy machine that can be inside the first request (a KeyboardInterrupt, no answer)
        for _ in range(2):
            cell.outputs = []
            try:
                run_cell(self.client, cell, self.seconds_left())
            except Exception as e:   # a time-out, a dead kernel
                raise KernelGone(f"{type(e).__name__} after {time.monotonic() - start:.0f} s") from None
            replies = [out["data"][MIME] for out in cell.outputs
                       if out.get("output_type") == "display_data" and MIME in out.get("data", {})]
            raised = [out.get("ename", "") for out in cell.outputs if out.get("output_type") == "error"]
            if replies or raised != ["KeyboardInterrupt"] or self.seconds_left() <= 0:
                break
        if not replies:
            raise KernelGone("the kernel sent no answer" + (f" (its cell raised {raised[0]})" if raised else ""))
        try:   # the last one: a student's function may have published a false one before it
            reply = decode(replies[-1], opaque=lambda number, type_name: proxy(self, number, type_name))
        except Exception as e:
            raise StudentError("BadReply", f"the kernel's answer could not be read ({e})", "") from None
        if not isinstance(reply, dict):
            raise StudentError("BadReply", "the kernel's answer is not a reply", "")
        if "reference" in reply:
            raise ReferenceUsed(str(reply["reference"]))
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            type_name = str(error.get("type", "Exception"))
            if type_name == "NotImplementedError":
                raise NotImplementedError(str(error.get("message", "")))
            raise StudentError(type_name, str(error.get("message", "")), str(error.get("where", "")))
        value = reply.get("value")
        if message.get("op") in ("call", "counted") and reply.get("grads"):
            value = with_gradients(value, message["args"], reply["grads"])
        return value


def with_gradients(value, args: list, grads: list):
    """The student's loss, rebuilt here so that autograd gives their gradient: its value is theirs, and its
    gradient with respect to each local input x_i is the g_i their kernel computed (NaN and inf included)."""
    import torch
    loss = value[0] if isinstance(value, tuple) else value
    if not isinstance(loss, torch.Tensor) or not isinstance(grads, list) or len(grads) != len(args):
        return value
    pairs = [(x, g) for x, g in zip(args, grads) if isinstance(x, torch.Tensor) and x.requires_grad
             and isinstance(g, torch.Tensor) and g.shape == x.shape]
    if not pairs:
        return value
    rebuilt = _TheirGradient.apply(loss.detach(), [g for _, g in pairs], *(x for x, _ in pairs))
    return (rebuilt, *value[1:]) if isinstance(value, tuple) else rebuilt


class _TheirGradient(torch.autograd.Function):
    """y = the student's loss; dy/dx_i = the gradient their kernel sent for x_i."""

    @staticmethod
    def forward(ctx, loss, grads, *xs):
        ctx.grads = grads
        return loss.clone()

    @staticmethod
    def backward(ctx, out):
        return (None, None, *(out * g.to(out.dtype) for g in ctx.grads))


class Remote(Handle):
    """An object in the kernel. Calls and attribute reads go there; what comes back is data or a Remote."""

    def __init__(self, kernel: Kernel, number: int, type_name: str):
        super().__init__(number, type_name)
        self._kernel = kernel

    def __call__(self, *args, **kwargs):
        return self._kernel.request(op="call", target=self, args=list(args), kwargs=kwargs,
                                    exercise=self._kernel.exercise)

    def __getattr__(self, name: str):
        if name.startswith("_"):   # Python's own protocols (copy, pickle, numpy) stay here
            raise AttributeError(name)
        return self._kernel.request(op="getattr", target=self, name=name, exercise=self._kernel.exercise)

    def counted_ppo(self, pipe, functions: dict) -> dict:
        """Exercise 4.5: run this `run_ppo(pipe, functions)` with calls of each function counted
        (checks.rlhf.counted_ppo, run in the kernel): {"history": [...], "counts": {name: calls}}."""
        return self._kernel.request(op="counted", target=self, args=[self, pipe, functions], kwargs={},
                                    exercise=self._kernel.exercise)

    def __repr__(self) -> str:
        return f"<{self.type_name} in the notebook>"


_classes: dict[str, type] = {}


def proxy(kernel: Kernel, number: int, type_name: str) -> Remote:
    """A Remote whose class has the remote object's type name, so a hint can say "got ndarray"."""
    name = type_name if type_name.isidentifier() else "object"
    if name not in _classes:
        _classes[name] = type(name, (Remote,), {})
    return _classes[name](kernel, number, type_name)
