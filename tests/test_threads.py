import pytest
import torch

from minirlhf.pipeline import threads


@pytest.mark.parametrize("cores, want", [(1, 1), (2, 1), (3, 2), (5, 4), (16, 4)])
def test_every_core_but_one_and_at_most_four(monkeypatch, cores, want):
    monkeypatch.delenv("MINIRLHF_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    assert threads.cpu_threads() == want


def test_the_environment_overrides(monkeypatch):
    monkeypatch.setenv("MINIRLHF_THREADS", "3")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.cpu_threads() == 3


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_bad_thread_count_says_what_to_do(monkeypatch, bad):
    monkeypatch.setenv("MINIRLHF_THREADS", bad)
    with pytest.raises(ValueError, match="not a positive whole number"):
        threads.cpu_threads()


def test_set_on_the_cpu_only(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("MINIRLHF_THREADS", "2")
    try:
        assert threads.use_cpu_threads(torch.device("meta")) == before   # not a CPU: left alone
        assert threads.use_cpu_threads(torch.device("cpu")) == 2
    finally:
        torch.set_num_threads(before)
