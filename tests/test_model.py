import json

import pytest
import torch

from minirlhf.generate import generate
from minirlhf.logprobs import response_logprobs
from minirlhf.model import GPT, GPTConfig, KVCache, attention_allowed
from minirlhf.packing import pack, unpack
from minirlhf.tokenizer import encode_prompts

PROMPTS = ["hi !", "what is the capital of zorbia ?", "count from 3 to 6 ."]


def test_left_padding_does_not_change_real_token_logits(tok, tiny_gpt):
    enc = encode_prompts(tok, PROMPTS)
    logits, _ = tiny_gpt(enc["input_ids"], enc["attention_mask"])
    for i, p in enumerate(PROMPTS):
        alone = encode_prompts(tok, [p])
        n = alone["input_ids"].shape[1]
        ref, _ = tiny_gpt(alone["input_ids"])
        torch.testing.assert_close(logits[i, -n:], ref[0], atol=1e-5, rtol=1e-5)


def test_packing_lays_sequences_end_to_end_first_fit():
    # the example of packing.py's docstring, by hand: rows as long as the longest sequence (4), first fit
    ids = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 5, 6, 7, 0, 0], [8, 0, 0, 0, 0, 0], [0, 0, 9, 10, 0, 0]])
    p = pack(ids, (ids > 0).long())
    assert p.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]]
    assert p.segments.tolist() == [[1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 0, 0]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 0]]
    x = torch.arange(12.0).view(3, 4, 1)          # any per-cell values come back where their tokens were
    back = unpack(x, p)[..., 0]
    assert back.tolist() == [[0, 0, 0, 1, 2, 3], [0, 4, 5, 6, 0, 0], [7, 0, 0, 0, 0, 0], [0, 0, 8, 9, 0, 0]]


def test_attention_stays_inside_a_segment():
    # one packed row: a (3 tokens), b (2), then padding; written out by hand, query by query
    allowed = attention_allowed(torch.tensor([[1, 1, 1, 2, 2, 0]]), 6)[0, 0]
    expected = [[1, 0, 0, 0, 0, 0],
                [1, 1, 0, 0, 0, 0],
                [1, 1, 1, 0, 0, 0],
                [0, 0, 0, 1, 0, 0],   # b's first token does not see a
                [0, 0, 0, 1, 1, 0],
                [0, 0, 0, 0, 0, 1]]   # padding sees only itself
    assert allowed.long().tolist() == expected


def test_a_packed_batch_gives_each_sequence_what_it_gets_alone():
    """Ragged sequences, padded on both sides at random: the padded (hence packed) forward pass must give
    every real token the logits, and every parameter the gradient, of each sequence run on its own."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    B, T = 9, 12
    ids = torch.randint(0, 40, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        start = int(torch.randint(0, 5, ()))
        mask[b, start:int(torch.randint(start + 1, T + 1, ()))] = 1
    assert len(pack(ids, mask).input_ids) < B                     # some rows share: it did pack
    logits, _ = model(ids, mask)
    logits[mask.bool()].logsumexp(-1).sum().backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    alone = [model(ids[b][mask[b].bool()][None])[0][0] for b in range(B)]
    sum(a.logsumexp(-1).sum() for a in alone).backward()
    for b in range(B):
        torch.testing.assert_close(logits[b][mask[b].bool()], alone[b], atol=1e-5, rtol=1e-5)
    assert logits[~mask.bool()].abs().max() == 0                  # padding: zeros, never read
    for g, p in zip(packed_grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


def test_kv_cache_generation_equals_generation_without_cache(tok, tiny_gpt):
    enc = encode_prompts(tok, PROMPTS)
    kw = dict(max_new_tokens=12, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    for temperature in (0.0, 1.0):
        a = generate(tiny_gpt, enc["input_ids"], enc["attention_mask"], temperature=temperature,
                     generator=torch.Generator().manual_seed(1), use_cache=True, **kw)
        b = generate(tiny_gpt, enc["input_ids"], enc["attention_mask"], temperature=temperature,
                     generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
        assert torch.equal(a.response_ids, b.response_ids)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)


def test_generation_runs_one_forward_pass_per_token_and_none_wasted(tok, tiny_gpt):
    """N tokens need the prompt's pass and N − 1 one-token passes: the last token's logits are never used."""
    enc = encode_prompts(tok, PROMPTS)
    calls = []
    hook = tiny_gpt.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    try:
        g = generate(tiny_gpt, enc["input_ids"], enc["attention_mask"], 7, -1, tok.pad_token_id,  # -1: never ends
                     generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert g.response_ids.shape[1] == 7
    assert calls == [enc["input_ids"].shape[1]] + [1] * 6


def test_kv_cache_refuses_more_tokens_than_it_holds(tiny_gpt):
    cache = KVCache(tiny_gpt.config, batch_size=1, max_len=4)
    tiny_gpt(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    assert cache.length == 3
    with pytest.raises(ValueError, match="holds 4 tokens; 5 were asked for"):
        tiny_gpt(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 5, dtype=torch.long), cache=cache)


def test_sampling_log_probs_are_recomputed_by_a_forward_pass(tok, tiny_gpt):
    enc = encode_prompts(tok, PROMPTS)
    g = generate(tiny_gpt, enc["input_ids"], enc["attention_mask"], 12, tok.eos_token_id, tok.pad_token_id,
                 temperature=0.7, generator=torch.Generator().manual_seed(0))
    lp = response_logprobs(tiny_gpt, g.input_ids, g.attention_mask, g.response_start, temperature=0.7)
    torch.testing.assert_close(lp * g.response_mask, g.logprobs, atol=1e-5, rtol=1e-5)


def test_generation_stops_at_end_of_turn_and_pads_after(tok, tiny_gpt):
    enc = encode_prompts(tok, PROMPTS)
    end = tok.eos_token_id
    g = generate(tiny_gpt, enc["input_ids"], enc["attention_mask"], 20, end, tok.pad_token_id,
                 generator=torch.Generator().manual_seed(0))
    for row, mask, ended in zip(g.response_ids, g.response_mask, g.ended):
        n = int(mask.sum())
        assert (row[n:] == tok.pad_token_id).all()
        assert bool(ended) == (n > 0 and row[n - 1].item() == end)


def test_save_load_round_trip(tiny_gpt, tmp_path):
    tiny_gpt.save_pretrained(tmp_path / "m")
    again = GPT.from_pretrained(tmp_path / "m")
    x = torch.randint(0, tiny_gpt.config.vocab_size, (2, 10))
    torch.testing.assert_close(again(x)[0], tiny_gpt(x)[0])
    assert again.lm_head.weight is again.tok_emb.weight


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*check the path"):
        GPT.from_pretrained(tmp_path / "nothing")


def test_checkpoint_of_another_version_is_refused(tiny_gpt, tmp_path):
    tiny_gpt.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["format_version"] = 0
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="another version of minirlhf"):
        GPT.from_pretrained(tmp_path / "m")


def test_failed_save_leaves_nothing_behind(tiny_gpt, tmp_path, monkeypatch):
    import minirlhf.checkpoint as ckpt

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)
    with pytest.raises(OSError):
        tiny_gpt.save_pretrained(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [(dict(n_embd=30, n_head=4), "multiple of n_head"),
                                           (dict(n_layer=0), "positive"), (dict(dropout=1.5), "dropout")])
def test_impossible_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_too_long_input_is_refused(tiny_gpt):
    with pytest.raises(ValueError, match="longer than block_size"):
        tiny_gpt(torch.zeros(1, 65, dtype=torch.long))
