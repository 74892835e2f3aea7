from minirlhf.world import KINDS, World, WorldConfig


def test_same_seed_same_world():
    a, b = World(WorldConfig(seed=3, n_internet=500)), World(WorldConfig(seed=3, n_internet=500))
    assert a.kb == b.kb
    assert a.internet()["text"] == b.internet()["text"]
    assert a.demonstrations()["response"] == b.demonstrations()["response"]
    assert [r.prompt for r in a.requests["eval"]] == [r.prompt for r in b.requests["eval"]]


def test_other_seed_other_world():
    a, b = World(WorldConfig(seed=0, n_internet=200)), World(WorldConfig(seed=1, n_internet=200))
    assert a.internet()["text"] != b.internet()["text"]


def test_splits_are_disjoint_and_cover_every_kind():
    w = World(WorldConfig(n_internet=3000))
    prompts = {name: {r.prompt for r in reqs} for name, reqs in w.requests.items()}
    names = list(prompts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not prompts[a] & prompts[b], (a, b)
    for reqs in w.requests.values():
        assert {r.kind for r in reqs} == set(KINDS)
    internet_prompts = {t.split(" <|end|>")[0].removeprefix("<|user|> ") for t in w.internet()["text"]
                        if t.startswith("<|user|>")}
    assert not internet_prompts & prompts["eval"], "held-out prompts leaked into the pretraining text"


def test_internet_is_flawed_and_demonstrations_are_good():
    from minirlhf.labelers import gold_score

    w = World(WorldConfig(n_internet=2000))
    texts = w.internet()["text"]
    assert any("idiot" in t or "stupid" in t for t in texts)
    assert any("first you" in t for t in texts)
    demos = w.demonstrations()
    by_prompt = {r.prompt: r for reqs in w.requests.values() for r in reqs}
    scores = [gold_score(by_prompt[p], r) for p, r in zip(demos["prompt"], demos["response"])]
    assert sum(scores) / len(scores) > 0.97
    assert min(scores) < 1.0, "demonstrations should be good, not perfect"


def test_datasets():
    dd = World(WorldConfig(n_internet=100)).to_dataset_dict()
    assert set(dd) == {"internet", "demonstrations", "prompts_eval", "prompts_sft", "prompts_reward", "prompts_rl"}
    assert dd["prompts_eval"].column_names == ["kind", "prompt", "answer", "subject", "numbers"]


def test_the_internet_holds_a_stereotype_and_the_demonstrations_do_not():
    from minirlhf.labelers import pins_trait_on_group
    from minirlhf.world import GROUPS, STEREOTYPES

    w = World(WorldConfig(n_internet=3000))
    own = other = 0
    for text in w.internet()["text"]:
        for sentence in text.split(" . "):
            words = sentence.split()
            for g in {x for x in words if x in GROUPS}:
                traits = [x for x in words if x in sum(STEREOTYPES.values(), ())]
                own += sum(t in STEREOTYPES[g] for t in traits)
                other += sum(t not in STEREOTYPES[g] for t in traits)
    assert own + other > 300 and own / (own + other) > 0.8   # the stereotyped trait, 85% of the time
    assert not any(pins_trait_on_group(r) for r in w.demonstrations()["response"])
