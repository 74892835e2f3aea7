"""The CrowS-Pairs-style probe (bias.py), checked against a plain loop over a hand-made bigram model."""
import math

import numpy as np
import pytest
import torch

from minirlhf.bias import pair_preferences, stereotype_pairs, stereotype_rate
from minirlhf.tokenizer import build_tokenizer
from minirlhf.world import GROUP_TEMPLATES, GROUPS, STEREOTYPES


class Bigram(torch.nn.Module):
    """logits(next | previous) = table[previous]: a language model simple enough to score by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    @property
    def device(self):
        return self.table.device

    def forward(self, ids, attention_mask=None):
        return self.table[ids], None   # (B, T, V)


def loop_score(table: torch.Tensor, ids: list[int], shared: list[bool]) -> float:
    """Σ log p(x_t | x_{t−1}) over the shared words, one token at a time."""
    total = 0.0
    for t in range(1, len(ids)):
        if shared[t]:
            row = table[ids[t - 1]].tolist()
            total += row[ids[t]] - math.log(sum(math.exp(v) for v in row))
    return total


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_the_probe_has_over_200_pairs_that_differ_only_in_the_group():
    pairs = stereotype_pairs()
    assert len(pairs) == len(GROUP_TEMPLATES) * 12 * 3 >= 200 and len(set(pairs)) == len(pairs)
    for stereo, anti in pairs:
        diff = [(a, b) for a, b in zip(stereo.split(), anti.split()) if a != b]
        assert len(stereo.split()) == len(anti.split()) and len(diff) == 1
        (g, other), = diff
        assert g in GROUPS and other in GROUPS and any(t in STEREOTYPES[g] for t in stereo.split())


def test_preferences_match_a_plain_loop_and_ignore_how_likely_the_group_word_is(tok):
    torch.manual_seed(0)
    vocab = tok.get_vocab()
    table = torch.randn(len(tok), len(tok))
    table[vocab["the"], vocab["gnomes"]] = -30.0   # "gnomes" itself nearly impossible: not scored, so no matter
    model = Bigram(table)
    pairs = stereotype_pairs()
    prefs = pair_preferences(model, tok, pairs)
    expected = []
    for stereo, anti in pairs:
        shared = [True] + [a == b for a, b in zip(stereo.split(), anti.split())]
        s = [loop_score(table, tok(f"{tok.bos_token} {x}", add_special_tokens=False)["input_ids"], shared)
             for x in (stereo, anti)]
        expected.append(1.0 if s[0] > s[1] else 0.0 if s[0] < s[1] else 0.5)
    assert prefs.tolist() == expected
    assert 0.2 < prefs.mean() < 0.8   # a random model has no stereotype to speak of


def test_only_the_shared_words_decide_and_equal_scores_tie(tok):
    """Every template puts "are" right after the group: a bigram that finds "are" likelier after "gnomes" than
    after any other group prefers whichever sentence of a pair names the gnomes, and ties the rest exactly."""
    vocab = tok.get_vocab()
    table = torch.zeros(len(tok), len(tok))
    table[vocab["gnomes"], vocab["are"]] = 2.0
    pairs = stereotype_pairs()
    prefs = pair_preferences(Bigram(table), tok, pairs)
    stereo_gnomes = np.array(["gnomes" in s.split() for s, _ in pairs])
    anti_gnomes = np.array(["gnomes" in a.split() for _, a in pairs])
    assert (prefs[stereo_gnomes] == 1).all() and (prefs[anti_gnomes] == 0).all()
    assert (prefs[~stereo_gnomes & ~anti_gnomes] == 0.5).all()
    rate = stereotype_rate(Bigram(table), tok)
    assert rate["rate"] == pytest.approx(prefs.mean()) and rate["n"] == len(pairs)
    assert rate["low"] < rate["rate"] < rate["high"]
