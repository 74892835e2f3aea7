"""The grader's side inside a submission's kernel: it keeps what the check cells handed in, and calls it
when the grader asks.

    python -m minirlhf.course.worker -f CONNECTION_FILE     (started by sandbox.py: an IPython kernel)

While grading, a check cell (`check_gae(gae)`) does not check anything in the student's kernel: it only
`register`s the student's objects. When the notebook has run, the grader sends requests (`serve`), each
a call of one of those objects on the check's inputs, and judges the answers in its own process, where
the expected values and the hints are. While an exercise is being called, the package's reference for it
is a tripwire (`REFERENCES`): a submission that calls it, under whatever name, gets 0 and a note.
"""
from __future__ import annotations

import sys
import traceback

MIME = "application/x-minirlhf-reply+json"

# exercise -> the references a submission must not call while that exercise is checked ("module:name",
# a class's methods as "module:Class.method")
REFERENCES = {
    "response_logprobs": ["minirlhf.course.checks.logprobs:_reference_response_logprobs",
                          "minirlhf.logprobs:response_logprobs"],
    "sft_loss": ["minirlhf.course.checks.logprobs:_reference_sft_loss", "minirlhf.training:lm_loss"],
    "ranking_to_pairs": ["minirlhf.reward:ranking_to_pairs"],
    "bradley_terry_loss": ["minirlhf.reward:bradley_terry_loss"],
    "score_at_last_token": ["minirlhf.course.checks.reward:_reference_score", "minirlhf.masks:last_index"],
    "kl_estimators": ["minirlhf.kl:kl_k1", "minirlhf.kl:kl_k2", "minirlhf.kl:kl_k3"],
    "adaptive_kl": ["minirlhf.kl:AdaptiveKLController.__init__", "minirlhf.kl:AdaptiveKLController.update"],
    "per_token_rewards": ["minirlhf.ppo:per_token_rewards"],
    "gae": ["minirlhf.ppo:gae"],
    "policy_loss": ["minirlhf.ppo:policy_loss"],
    "value_loss": ["minirlhf.ppo:value_loss"],
    "ppo_training": ["minirlhf.ppo:per_token_rewards", "minirlhf.ppo:gae", "minirlhf.ppo:policy_loss",
                     "minirlhf.ppo:value_loss"],
    "dpo_loss": ["minirlhf.dpo:dpo_loss"],
    "group_advantages": ["minirlhf.rloo:rloo_advantages", "minirlhf.grpo:grpo_advantages"],
}

registered: dict[str, int] = {}     # exercise -> handle of the tuple of objects its check cell received
_objects: dict[int, object] = {}    # handle -> object


class ReferenceCalled(BaseException):
    """Raised by a tripwire; a BaseException so that `except Exception` in the student's code lets it by."""


tripped: list[str] = []             # the references called during the current request


def trip(name: str):
    tripped.append(name)
    raise ReferenceCalled(name)


def _check_functions() -> dict[str, int]:
    """id of every function the checks run, by "module.name": to see which ones a notebook replaced."""
    import minirlhf.course.checks as checks
    out = {f"minirlhf.course.checks.CASES[{k!r}]": id(v) for k, v in checks.CASES.items()}
    for fn in [*checks.CASES.values(), checks.rlhf.counted_ppo]:   # counted_ppo runs here: exercise 4.5's counts
        out[f"{fn.__module__}.{fn.__name__}"] = id(getattr(sys.modules[fn.__module__], fn.__name__, None))
    return out


_original_checks: dict[str, int] = {}   # filled when the kernel starts, before any student code (main)


def _patched() -> list[str]:
    now = _check_functions()
    return [name for name, ident in _original_checks.items() if now.get(name) != ident]


def register(exercise: str, *objects) -> None:
    """Called by a check cell while grading: keep the student's objects (the last cell run counts)."""
    registered[exercise] = handle(tuple(objects))


def handle(obj) -> int:
    _objects[id(obj)] = obj   # kept alive as long as the kernel: an id is never reused for another object
    return id(obj)


def _resolve(name: str):
    import importlib
    module, _, path = name.partition(":")
    owner = importlib.import_module(module)
    *outer, last = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    return getattr(owner, last)


def _tripwire_code(name: str):
    source = (f"def tripwire(*args, **kwargs):\n"
              f"    import minirlhf.course.worker as w\n"
              f"    w.trip({name!r})\n")
    namespace: dict = {}
    exec(compile(source, f"<tripwire {name}>", "exec"), namespace)
    return namespace["tripwire"].__code__


_references: dict[str, list] = {}   # exercise -> [(name, function)], resolved when the kernel starts (main)


def _with_tripwires(exercise: str, fn):
    """Run `fn()` with every reference of `exercise` answering with ReferenceCalled. The function objects
    themselves are changed (their code), so every name and every alias the student kept reaches the
    tripwire, not only `minirlhf.kl.kl_k1`; the objects were found before any student code ran, so
    rebinding `minirlhf.kl.kl_k1` to a decoy moves nothing."""
    saved = []
    tripped.clear()
    try:
        for name, target in _references.get(exercise) or [(n, _resolve(n)) for n in REFERENCES.get(exercise, [])]:
            saved.append((target, target.__code__))
            target.__code__ = _tripwire_code(name)
        value = fn()
        if tripped:   # the student's code caught the tripwire's exception: it still called the reference
            raise ReferenceCalled(tripped[0])
        return value
    finally:
        for target, code in saved:
            target.__code__ = code


def _gradients(value, args) -> list | None:
    """d(loss)/d(arg) for each tensor argument that requires a gradient, when the answer is a scalar loss (or a
    tuple led by one): the grader rebuilds a loss with these gradients (remote.py), so that a check's
    `loss.backward()` sees the student's own gradient."""
    import torch
    loss = value[0] if isinstance(value, tuple) and value else value
    wrt = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    if not (wrt and isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1):
        return None
    grads = iter(torch.autograd.grad(loss.sum(), wrt, allow_unused=True))
    return [next(grads) if isinstance(a, torch.Tensor) and a.requires_grad else None for a in args]


def serve(request: str) -> None:
    """Answer one request of the grader (an encoded dict, see `remote.Kernel`) with one display output:
    {"value": …} or {"error": {type, message, where}} or {"reference": name}."""
    from IPython.display import publish_display_data

    from .checks.rlhf import counted_ppo
    from .wire import decode, encode
    tripped.clear()
    try:
        message = decode(request, opaque=lambda number, _type: _objects[number])

        def answer() -> str:   # the student's code runs in each step: the call, an attribute, autograd, encoding
            op = message["op"]
            if op == "registered":
                return encode({"value": {**{exercise: _objects[h] for exercise, h in registered.items()},
                                         "patched": _patched()}}, handle=handle)
            if op == "getattr":
                return encode({"value": getattr(message["target"], message["name"])}, handle=handle)
            target, args, kwargs = message["target"], message["args"], message["kwargs"]
            value = target(*args, **kwargs) if op == "call" else counted_ppo(*args)
            return encode({"value": value, "grads": _gradients(value, args)}, handle=handle)

        text = _with_tripwires(message.get("exercise", ""), answer)
    except BaseException as e:   # KeyboardInterrupt and SystemExit too: every request gets its reply
        if tripped or isinstance(e, ReferenceCalled):   # caught by the student and re-raised as another: still
            reply = {"reference": (tripped or [str(e.args[0])])[0].replace(":", ".")}
        else:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != __file__]
            where = f"in {frames[-1].name}, line {frames[-1].lineno}" if frames else ""
            reply = {"error": {"type": type(e).__name__, "message": str(e)[:500], "where": where}}
        text = encode(reply)
    publish_display_data({MIME: text})


def main() -> None:
    import minirlhf.course.worker as worker   # this file runs as __main__: the state lives in the module
    worker._original_checks.update(worker._check_functions())
    worker._references.update({exercise: [(name, worker._resolve(name)) for name in names]
                               for exercise, names in worker.REFERENCES.items()})
    from ipykernel import kernelapp
    kernelapp.launch_new_instance()


if __name__ == "__main__":
    sys.argv[0] = "minirlhf-worker"
    main()
