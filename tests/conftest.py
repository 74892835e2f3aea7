import os

import pytest
import torch

from minirlhf.model import GPT, GPTConfig
from minirlhf.tokenizer import build_tokenizer

# one thread everywhere, also in the notebook kernels nbval starts (they inherit the environment) and in
# every Pipeline: the last digits of results depend on the thread count, and the tests compare them exactly
os.environ.setdefault("MINIRLHF_THREADS", "1")
torch.set_num_threads(int(os.environ["MINIRLHF_THREADS"]))


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer()


@pytest.fixture
def tiny_gpt(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
