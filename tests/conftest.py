import os

import pytest
import torch

from minirlhf.model import GPT, GPTConfig
from minirlhf.tokenizer import build_tokenizer

# one thread everywhere, also in the notebook kernels nbval starts (they inherit the environment) and in
# every Pipeline: the last digits of results depend on the thread count, and the tests compare them exactly
os.environ.setdefault("MINIRLHF_THREADS", "1")
os.environ.setdefault("MINIRLHF_JOBS", "1")   # one process a main job: the tests already use every core (make test)
torch.set_num_threads(int(os.environ["MINIRLHF_THREADS"]))


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer()


@pytest.fixture
def optimizer_rates(monkeypatch) -> dict:
    """Spy on AdamW.step: the learning rate each optimizer had at each of its steps, one list per optimizer, in
    the order the optimizers first stepped."""
    seen = {}
    step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.setdefault(id(self), []).append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return seen


@pytest.fixture
def tiny_gpt(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


# `make test` gives each pytest worker whole files (--dist loadfile --no-loadscope-reorder), in collection order.
# The main job's test goes first: it trains the stages nearly every notebook reads. The unit tests, which read no
# stage, keep the other worker busy meanwhile; then the longest files, so that none of them starts last and keeps
# one worker busy while the other idles (at 4bb43d5, in xdist's default order, 45 min of CPU took 27 min on 2
# workers).
FIRST = "tests/test_pipeline.py"
LONGEST = ("notebooks/08_limits_and_what_came_next.ipynb", "tests/test_grading.py",
           "notebooks/07_evaluation_and_alignment_tax.ipynb", "notebooks/06_kl_and_reward_hacking.ipynb",
           "notebooks/05_ppo.ipynb", "notebooks/09_what_came_next_measured.ipynb")
READ_STAGES = ("tests/test_exercises.py",)   # unit-test files that load trained stages


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        if path == FIRST:
            return 0
        if path.startswith("tests/") and path not in LONGEST + READ_STAGES:
            return 1
        return 2 + LONGEST.index(path) if path in LONGEST else 2 + len(LONGEST)
    items.sort(key=rank)   # stable: every file's items (a notebook's cells) keep their order
