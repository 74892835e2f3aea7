import pytest
import torch

from minirlhf.model import GPT, GPTConfig
from minirlhf.tokenizer import build_tokenizer

# the models are tiny: one thread is as fast as two on an idle laptop and many times faster on a busy one
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer()


@pytest.fixture
def tiny_gpt(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
