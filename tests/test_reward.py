import math

import pytest
import torch

from minirlhf.model import GPT, GPTConfig
from minirlhf.reward import RewardModel, bradley_terry_loss, encode_dialogues, ranking_to_pairs


def test_bradley_terry_hand_example():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2)


@pytest.mark.parametrize("k", [2, 4, 7])
def test_ranking_gives_all_pairs(k):
    ranking = list(range(k))[::-1]
    pairs = ranking_to_pairs(ranking)
    assert len(pairs) == k * (k - 1) // 2
    assert len(set(pairs)) == len(pairs)
    assert all(ranking.index(w) < ranking.index(l) for w, l in pairs)


def test_reward_is_read_at_the_last_real_token_whatever_the_padding(tok):
    torch.manual_seed(0)
    rm = RewardModel(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
    prompts = ["hi !", "what is the capital of zorbia ?", "count from 3 to 6 ."]
    responses = ["hello ! how can i help you today ?", "the capital", "3 4 5 6 ."]
    ended = [True, False, True]
    ids, attn = encode_dialogues(tok, prompts, responses, ended)
    batch = rm(ids, attn)
    for i in range(3):
        one_ids, one_attn = encode_dialogues(tok, prompts[i:i + 1], responses[i:i + 1], ended[i:i + 1])
        assert rm(one_ids, one_attn).item() == pytest.approx(batch[i].item(), abs=1e-5)
        # the head on the last real position, computed independently of the score path
        n = int(one_attn.sum())
        v = rm.values(one_ids, one_attn)[0, n - 1]
        assert rm.raw_score(one_ids, one_attn).item() == pytest.approx(v.item(), abs=1e-6)


def test_normalisation_gives_mean_zero_std_one(tok):
    rm = RewardModel(GPTConfig(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16))
    raw = torch.tensor([1.0, 2.0, 3.0, 6.0])
    rm.set_normalization(raw)
    normed = (raw - rm.norm_mean) / rm.norm_std
    assert normed.mean().item() == pytest.approx(0, abs=1e-6)
    assert normed.std().item() == pytest.approx(1, abs=1e-6)


def test_reward_model_save_load(tok, tmp_path):
    lm = GPT(GPTConfig(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16))
    rm = RewardModel.from_language_model(lm)
    rm.set_normalization(torch.tensor([0.0, 4.0]))
    rm.save_pretrained(tmp_path / "rm")
    again = RewardModel.from_pretrained(tmp_path / "rm")
    ids, attn = encode_dialogues(tok, ["hi !"], ["hello !"], [True])
    assert again(ids, attn).item() == pytest.approx(rm(ids, attn).item(), abs=1e-6)
