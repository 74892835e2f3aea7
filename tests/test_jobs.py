"""`--jobs N`: helper processes train a run's stages beside the main job (pipeline/jobs.py). The rule for the
default, and the TINY setting's stages trained on two processes against one: each stage trained once, to the
same weights and metrics."""
import json
import time
from dataclasses import replace

import pytest
import torch

from minirlhf.pipeline import Pipeline, cache, jobs
from minirlhf.pipeline.main import run
from tiny import TINY


@pytest.mark.parametrize("cores, threads, want", [(1, "1", 1), (2, "1", 2), (2, "2", 1), (8, "4", 2), (16, "1", 2),
                                                  (3, "2", 1)])
def test_one_process_per_core_its_threads_leave_and_at_most_two(monkeypatch, cores, threads, want):
    monkeypatch.delenv("MINIRLHF_JOBS", raising=False)
    monkeypatch.setenv("MINIRLHF_THREADS", threads)
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: cores)
    assert jobs.cpu_jobs() == want


def test_the_environment_overrides_the_number_of_processes(monkeypatch):
    monkeypatch.setenv("MINIRLHF_JOBS", "3")
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: 1)
    assert jobs.cpu_jobs() == 3
    for bad in ["0", "many", "-2", "1.5"]:
        monkeypatch.setenv("MINIRLHF_JOBS", bad)
        with pytest.raises(ValueError, match="not a positive whole number of processes; unset it"):
            jobs.cpu_jobs()


def test_each_helper_walks_every_stage_from_its_own_place_at_the_end():
    names = list("abcdef")
    assert jobs.walking_orders(names, 1) == []
    assert jobs.walking_orders(names, 2) == [list("fedcba")]   # the caller walks a → f: they meet in the middle
    assert jobs.walking_orders(names, 3) == [list("fedcba"), list("cbafed")]
    for order in jobs.walking_orders(names, 4):
        assert sorted(order) == names


def test_a_helper_trains_from_the_end_and_the_results_are_those_of_one_process(tmp_path, capfd):
    """The caller waits for the helper's first stage (the last of the list), so that the helper surely trains
    one whatever the machine's speed; then each stage was trained once, by one of them, to the weights one
    process gives. The helper's lines reach the terminal (capfd: the file descriptors a spawned process
    inherits)."""
    setting = replace(TINY, ppo=replace(TINY.ppo, steps=10))
    names = ["base", "sft", "reward", "rlhf", "dpo", "rloo", "grpo"]
    pipe = Pipeline(setting, tmp_path / "two")
    with jobs.helpers(setting, pipe.out_dir, None, names, 2) as by_helper:
        deadline = time.time() + 120
        while not cache.is_finished(pipe.path("grpo")) and time.time() < deadline:
            time.sleep(0.1)
        for name in names:
            pipe.stage_dir(name)
    out = capfd.readouterr().out
    assert "grpo" in by_helper and "[job 2] trained grpo in " in out
    assert sorted(pipe.built + by_helper) == sorted(["world", *names]), "each stage trained once, by one process"
    one = run(setting, tmp_path / "one", algorithm_names=["ppo", "dpo", "rloo", "grpo"], jobs=1)
    two = run(setting, tmp_path / "two", algorithm_names=["ppo", "dpo", "rloo", "grpo"], jobs=2)
    assert two["built_this_run"] == [] and (one["jobs"], two["jobs"]) == (1, 2)
    for name in names:
        a, b = Pipeline(setting, tmp_path / "one").model(name), pipe.model(name)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())), name
    same = lambda m: {k: v for k, v in m.items() if k not in ("timing_s", "built_this_run", "jobs")}   # noqa: E731
    assert json.dumps(same(one), sort_keys=True) == json.dumps(same(two), sort_keys=True)
