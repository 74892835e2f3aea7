import pytest
import torch

from minirlhf.tokenizer import build_tokenizer, encode_prompts
from minirlhf.world import World, WorldConfig, chat_text


def test_round_trip_of_every_internet_document(tok):
    texts = World(WorldConfig(n_internet=300)).internet()["text"]
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == t


def test_special_tokens_are_distinct(tok):
    ids = [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id,
           *tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>"])]
    assert len(set(ids)) == 6
    assert tok.eos_token == "<|end|>"


def test_chat_template_matches_world_text(tok):
    msgs = [{"role": "user", "content": "hello !"}, {"role": "assistant", "content": "hello ! how can i help you today ?"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<|bos|> " + chat_text("hello !", "hello ! how can i help you today ?")
    gen = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert gen == "<|bos|> <|user|> hello ! <|end|> <|assistant|>"


def test_prompts_are_left_padded(tok):
    enc = encode_prompts(tok, ["hi !", "what is 3 plus 4 ?"])
    assert enc["input_ids"].shape == enc["attention_mask"].shape
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][0, -1] == 1
    assert (enc["input_ids"][:, -1] == tok.convert_tokens_to_ids("<|assistant|>")).all()


def test_prompt_encoding_equals_the_tokenizers_own_padded_batch(tok):
    prompts = ["hi !", "what is 3 plus 4 ?", "what is the capital of zorbia ?", "hi !"]
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    want = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = encode_prompts(tok, prompts)
    assert torch.equal(enc["input_ids"], want["input_ids"])
    assert torch.equal(enc["attention_mask"], want["attention_mask"])


def test_unknown_words_are_refused_with_a_useful_message(tok):
    with pytest.raises(ValueError, match="unknown words \\['banana'\\]"):
        encode_prompts(tok, ["what color is the banana ?"])


def test_save_and_load(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|user|> what is 3 plus 4 ? <|end|>"
    assert again(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert again.chat_template == build_tokenizer().chat_template
