"""What users do to the main job besides the happy path, one family per test: bad command lines, bad
environment variables, damaged caches, and odd calls to the API. Each case has the message it must give
(a one-line error and exit code 2 on the command line, never a traceback) or the right answer."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minirlhf.__main__ import main
from minirlhf.pipeline import Pipeline, cache
from minirlhf.pipeline.cache import DamagedStage
from minirlhf.settings import setting_name
from tiny import TINY

# -- the command line -----------------------------------------------------------------------------

CLI_CASES = [   # argv, the message its one line must hold
    (["run", "--seed", str(2**70)], r"argument --seed: \d+ is out of range: a seed is a whole number from 0 to 2147483647"),
    (["run", "--seed", "-1"], r"argument --seed: -1 is out of range"),
    (["run", "--seed", "one"], r"argument --seed: 'one' is not a whole number"),
    (["run", "--device", "bogus"], r"argument --device: device 'bogus' is not a device PyTorch knows"),
    (["run", "--setting", "huge"], r"argument --setting: invalid choice: 'huge'"),
    (["run", "--algorithms", "magic"], r"argument --algorithms: invalid choice: 'magic'"),
    (["run", "--out", "{file}"], r"the run folder .*a_file is a file: give a folder"),
    (["run", "--out", "{file}/below"], r"cannot write in the run folder .*a_file/below \(Not a directory\)"),
    (["run", "--out", "/proc/minirlhf"], r"cannot write in the run folder /proc/minirlhf"),
    (["run", "--jobs", "0"], r"argument --jobs: 0 is out of range: a number of processes is a whole number from 1"),
    (["lessons", "--jobs", "two"], r"argument --jobs: 'two' is not a whole number"),
    (["repair", "nothing"], r"no stage named nothing; registered stages: world, base, sft"),
    (["repair", "--seed", "2.5"], r"argument --seed: '2.5' is not a whole number"),
    (["lessons", "--seeds", "0", "x"], r"argument --seeds: 'x' is not a whole number"),
    (["lessons", "--device", "tpu9"], r"argument --device: device 'tpu9' is not a device PyTorch knows"),
    (["lessons", "--out", "{file}"], r"the run folder .*a_file is a file"),
    (["lessons", "--reruns", "-1"], r"argument --reruns: -1 is out of range: a rerun is a whole number from 0"),
    (["lessons", "--reruns", "1", "1"], r"--reruns 1 1: name each rerun once"),
    (["lessons", "--seeds", "2147483000", "--reruns", "2"], r"seed 2147483000 with rerun 2 takes seeds above 2147483647"),
    (["grade", "{tmp}/nobody"], r"nobody is not a folder: give the folder of submissions"),
    (["grade", "{tmp}/empty"], r"no \.ipynb submissions in .*empty"),
    (["grade", "{tmp}/empty", "--jobs", "0"], r"--jobs at least 1 \(got 900 and 0\)"),
    (["grade", "{tmp}/empty", "--timeout", "-5"], r"--timeout must be above 0 s"),
    (["grade"], r"give the folder of submissions \(or --self NOTEBOOK"),
    (["grade", "--self", "{tmp}/nobody.ipynb"], r"nobody.ipynb is not a file: give the notebook to preview"),
]
if not torch.cuda.is_available():
    CLI_CASES.append((["run", "--device", "cuda"], r"device 'cuda' is not available on this machine"))


def exits_with(argv, capsys) -> str:
    """Run the command line in-process; it must exit with code 2 and one line of error (after the usage)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_a_bad_command_line_is_one_line_and_exit_code_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIRLHF_HOME", str(tmp_path / "home"))
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    argv = [a.format(file=tmp_path / "a_file", tmp=tmp_path) for a in argv]
    assert re.search(message, exits_with(argv, capsys))


# -- the environment ------------------------------------------------------------------------------

ENV_CASES = [   # variables, the message
    ({"MINIRLHF_FAST": "maybe"}, r"MINIRLHF_FAST='maybe' is neither yes nor no: use 1 or 0"),
    ({"MINIRLHF_FAST": "2"}, r"MINIRLHF_FAST='2' is neither yes nor no"),
    ({"MINIRLHF_FAST": "1", "MINIRLHF_SETTING": "default"},
     r"MINIRLHF_FAST=1 and MINIRLHF_SETTING=default ask for two settings: unset one of them"),
    ({"MINIRLHF_FAST": "yes", "MINIRLHF_SETTING": "gpu"}, r"MINIRLHF_FAST=yes and MINIRLHF_SETTING=gpu ask for two"),
    ({"MINIRLHF_SETTING": "huge"}, r"MINIRLHF_SETTING='huge' is not a setting; use one of \['default', 'fast', 'gpu'\]"),
    ({"MINIRLHF_THREADS": "two"}, r"MINIRLHF_THREADS='two' is not a positive whole number of threads"),
    ({"MINIRLHF_THREADS": "0"}, r"MINIRLHF_THREADS='0' is not a positive whole number"),
    ({"MINIRLHF_JOBS": "all"}, r"MINIRLHF_JOBS='all' is not a positive whole number of processes"),
    ({"MINIRLHF_HOME": "{file}"}, r"the run folder .*a_file/fast is a file|cannot write in the run folder .*a_file"),
]


@pytest.mark.parametrize("env, message", ENV_CASES, ids=[str(e) for e, _ in ENV_CASES])
def test_a_bad_environment_variable_is_one_line_and_exit_code_2(env, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("MINIRLHF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIRLHF_FAST", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(file=tmp_path / "a_file"))
    argv = ["run", "--fast"] if "MINIRLHF_FAST" not in env and "MINIRLHF_SETTING" not in env else ["run"]
    assert re.search(message, exits_with(argv, capsys))


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("YES", True), ("yes", True),
                                         ("0", False), ("false", False), ("No", False), ("", False)])
def test_yes_no_flags_mean_what_they_say(value, fast, monkeypatch):
    monkeypatch.delenv("MINIRLHF_SETTING", raising=False)
    monkeypatch.setenv("MINIRLHF_FAST", value)
    assert (setting_name() == "fast") == fast   # "false" and "no" once ran the fast setting
    monkeypatch.setenv("MINIRLHF_SETTING", "fast")
    if fast:
        assert setting_name() == "fast"   # the two agree: no conflict


# -- a damaged cache --------------------------------------------------------------------------------

STAGES = ["world", "base", "sft", "reward", "rlhf"]   # data sets, a language model, a reward model, a policy


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The TINY stages up to PPO, built once; each test works on a copy."""
    home = tmp_path_factory.mktemp("cache")
    pipe = Pipeline(TINY, home)
    pipe.stage_dir("rlhf")
    return home, {name: pipe.path(name).name for name in STAGES}


@pytest.fixture
def home(built, tmp_path):
    source, folders = built
    shutil.copytree(source, tmp_path / "home", copy_function=shutil.copy2)
    return tmp_path / "home", folders


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    else:   # one flipped bit in the middle: a weight's exponent, a digit, a letter
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:])


@pytest.mark.parametrize("how", ["flip a bit", "truncate", "delete"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_damaged_file_of_any_stage_is_refused_with_the_stage_the_file_and_the_fix(home, stage, how):
    home, folders = home
    folder = home / folders[stage]
    pristine = home.parent / "pristine"
    shutil.copytree(folder, pristine, copy_function=shutil.copy2)
    for path in files_of(pristine):
        rel = path.relative_to(pristine)
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder, copy_function=shutil.copy2)
        damage(folder / rel, how)
        pipe = Pipeline(TINY, home)
        if str(rel) == "log.json" and how == "delete":   # no log: an unfinished stage, trained again
            pipe.stage_dir("rlhf")
            assert pipe.built == [stage], "a stage rebuilt bit for bit leaves its downstream stages valid"
            continue
        with pytest.raises(DamagedStage) as e:
            pipe.stage_dir("rlhf")   # loads every stage of STAGES, upstream first
        message = str(e.value)
        assert "\n" not in message
        assert f"stage {stage!r}" in message, message
        assert str(rel) in message or rel.name == "manifest.json", message   # a flipped digest names its file
        assert f"Rebuild it with: Pipeline(<these settings>, {str(home)!r}, repair=True).stage_dir({stage!r})" in message


@pytest.mark.parametrize("stage", STAGES)
def test_run_moves_a_damaged_stage_aside_and_rebuilds_it_bit_for_bit(home, stage, capsys):
    home, folders = home
    folder = home / folders[stage]
    before = {str(p.relative_to(folder)): cache.file_digest(p) for p in files_of(folder) if p.name != "log.json"}
    biggest = max(files_of(folder), key=lambda p: p.stat().st_size)   # the weights, or a data set's table
    damage(biggest, "flip a bit")
    pipe = Pipeline(TINY, home, repair=True)   # as the main job and `repair` build it
    pipe.stage_dir("rlhf")
    assert pipe.built == [stage], "the stages downstream read the same bytes as before: they stay"
    lines = [line for line in capsys.readouterr().out.splitlines() if "was damaged" in line]
    assert len(lines) == 1 and f"stage {stage} was damaged ({biggest.relative_to(folder)}" in lines[0]
    assert (home / "damaged" / folders[stage]).is_dir(), "the damaged folder is kept aside, not deleted"
    after = {str(p.relative_to(folder)): cache.file_digest(p) for p in files_of(folder) if p.name != "log.json"}
    assert {k: v for k, v in after.items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}
    assert Pipeline(TINY, home).stage_dir("rlhf")   # and loads without a word


def test_a_stage_built_from_another_upstream_is_rebuilt_with_everything_downstream(home):
    home, folders = home
    base = home / folders["base"]
    # as if base had been rebuilt and come out different (another machine, another PyTorch): other weights
    # and a manifest that matches them
    from safetensors.torch import load_file, save_file

    weights = load_file(str(base / "model" / "model.safetensors"))
    save_file({k: v + 0.01 for k, v in weights.items()}, str(base / "model" / "model.safetensors"))
    cache.write_manifest(base, json.loads((base / "manifest.json").read_text())["upstream"])
    with pytest.raises(DamagedStage, match=r"stage 'sft' .*built from another 'base' than the one in the cache now"):
        Pipeline(TINY, home).stage_dir("rlhf")
    pipe = Pipeline(TINY, home, repair=True)
    pipe.stage_dir("rlhf")
    assert pipe.built == ["sft", "reward", "rlhf"]


def test_the_command_in_the_message_rebuilds_the_stage(tmp_path):
    pipe = Pipeline("fast", tmp_path)
    world = pipe.stage_dir("world")
    split = next(p for p in files_of(world) if p.suffix == ".arrow")
    split.unlink()   # a deleted split of the world once passed `run` and crashed the notebooks later
    with pytest.raises(DamagedStage) as e:
        Pipeline("fast", tmp_path).datasets()
    command = str(e.value).split("Rebuild it with: ")[1]
    assert command == f"python -m minirlhf repair world --setting fast --seed 0 --out {tmp_path}"
    env = {k: v for k, v in os.environ.items() if k not in ("MINIRLHF_FAST", "MINIRLHF_SETTING")}
    done = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stage world was damaged" in done.stdout and "rebuilt world" in done.stdout
    assert len(Pipeline("fast", tmp_path).datasets()["prompts_eval"]) > 0


def test_a_read_only_cache_serves_what_it_has_and_says_what_it_cannot_build(tmp_path, monkeypatch):
    Pipeline(TINY, tmp_path).stage_dir("world")

    def read_only(*args, **kwargs):   # root may write anywhere: a folder it cannot write in, simulated
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache.tempfile, "TemporaryFile", read_only)
    pipe = Pipeline(TINY, tmp_path)
    assert len(pipe.datasets()["prompts_eval"]) > 0
    with pytest.raises(ValueError, match=r"stage 'base' must be built, but cannot write in the run folder .* "
                                         r"\(Permission denied\)"):
        pipe.stage_dir("base")


def test_leftovers_of_killed_runs_go_unless_a_run_holds_their_lock(tmp_path):
    for stage in ("sft-0123456789", "ppo-9876543210"):
        (tmp_path / f".{stage}.lock").touch()
        (tmp_path / f".{stage}.k2j3h4").mkdir()            # a killed run's temporary folder
        (tmp_path / f".{stage}.k2j3h4" / "weights").write_text("half")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(tmp_path / '.ppo-9876543210.lock')!r}, 'a')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"   # a run building the PPO stage right now
        removed = cache.remove_leftovers(tmp_path)
    finally:
        holder.kill()
    assert [p.name for p in removed] == [".sft-0123456789.k2j3h4"]
    assert (tmp_path / ".ppo-9876543210.k2j3h4" / "weights").is_file(), "a running build's work is never deleted"


def test_stage_folders_are_as_readable_as_any_folder_the_user_makes(built):
    home, folders = built
    expected = 0o777 & ~cache_umask()
    for folder in (home / folders["sft"], home / folders["sft"] / "model", home / folders["world"] / "data"):
        assert folder.stat().st_mode & 0o777 == expected, f"{folder}: {oct(folder.stat().st_mode & 0o777)}"


def cache_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- the API ------------------------------------------------------------------------------------------

def _api_cases():
    from minirlhf.dpo import dpo_loss
    from minirlhf.generate import generate
    from minirlhf.masks import last_index, pad_left
    from minirlhf.model import GPT, GPTConfig
    from minirlhf.ppo import per_token_rewards, policy_loss, value_loss
    from minirlhf.reward import RewardModel, bradley_terry_loss
    from minirlhf.tokenizer import build_tokenizer, encode_prompts
    from minirlhf.training import pick_device

    tok = build_tokenizer()
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=1, n_head=1, n_embd=16))
    enc = encode_prompts(tok, ["what is 2 plus 3 ?"])
    ids, attn = enc["input_ids"], enc["attention_mask"]

    def sample(**kw):
        args = dict(input_ids=ids, attention_mask=attn, max_new_tokens=4, eos_token_id=tok.eos_token_id,
                    pad_token_id=tok.pad_token_id)
        return lambda: generate(gpt, **{**args, **kw})

    x = torch.zeros(2, 3)
    return [
        ("temperature=-1", sample(temperature=-1.0), "temperature must be 0 \\(greedy\\) or above, got -1"),
        ("temperature=nan", sample(temperature=float("nan")), "temperature must be 0"),
        ("top_k=0", sample(top_k=0), "top_k must be at least 1"),
        ("empty batch", sample(input_ids=ids[:0], attention_mask=attn[:0]), "with B, P ≥ 1, got \\(0, \\d+\\)"),
        ("zero-length prompt", sample(input_ids=ids[:, :0], attention_mask=attn[:, :0]), "got \\(1, 0\\)"),
        ("mask of another shape", sample(attention_mask=attn[:, 1:]), "must be one \\(B, P\\) shape"),
        ("encode_prompts([])", lambda: encode_prompts(tok, []), "prompts must be a non-empty list of strings, got \\[\\]"),
        ("encode_prompts(str)", lambda: encode_prompts(tok, "hi"), "prompts must be a non-empty list of strings"),
        ("pad_left([])", lambda: pad_left([], 0), "got an empty batch"),
        ("bradley_terry_loss((3, 1), (3,))", lambda: bradley_terry_loss(torch.zeros(3, 1), torch.zeros(3)),
         "expected tensors of one shape, got \\{'r_chosen': \\(3, 1\\), 'r_rejected': \\(3,\\)\\}"),
        ("bradley_terry_loss(empty)", lambda: bradley_terry_loss(torch.zeros(0), torch.zeros(0)),
         "the mean of nothing is NaN"),
        ("dpo_loss shapes", lambda: dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3, 1), torch.zeros(3), 0.1),
         "'ref_chosen_logps': \\(3, 1\\)"),
        ("policy_loss shapes", lambda: policy_loss(x, x, torch.zeros(2, 1), x.long()), "'advantages': \\(2, 1\\)"),
        ("value_loss shapes", lambda: value_loss(x, x, torch.zeros(2), x.long()), "'returns': \\(2,\\)"),
        ("an all-padding row", lambda: per_token_rewards(torch.ones(2), x, x, torch.tensor([[1, 1, 0], [0, 0, 0]]), 0.1),
         "rows \\[1\\] of the mask have no real token"),
        ("last_index of an empty row", lambda: last_index(torch.zeros(1, 4)), "rows \\[0\\] of the mask have no real token"),
        ("set_normalization(1 score)", lambda: RewardModel(gpt.config).set_normalization(torch.tensor([0.3])),
         "set_normalization needs at least 2 finite scores"),
        ("set_normalization(nan)", lambda: RewardModel(gpt.config).set_normalization(torch.tensor([0.3, float("nan")])),
         "needs at least 2 finite scores"),
        ("pick_device('bogus')", lambda: pick_device("bogus"), "'bogus' is not a device PyTorch knows"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("call, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_an_impossible_call_is_a_value_error_that_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nan_in_padding_never_reaches_a_real_token():
    from minirlhf.ppo import gae, per_token_rewards, whiten

    nan = float("nan")
    mask = torch.tensor([[1, 1, 0]])
    # GAE by hand, γ = 1, λ = 0.95: A_1 = 1 + 0 − 0.5 = 0.5; A_0 = (0 + 0.5 − 0.5) + 0.95 · 0.5 = 0.475
    adv, ret = gae(torch.tensor([[0.0, 1.0, nan]]), torch.tensor([[0.5, 0.5, nan]]), mask)
    torch.testing.assert_close(adv, torch.tensor([[0.475, 0.5, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.975, 1.0, 0.0]]))
    rewards, kl = per_token_rewards(torch.tensor([2.0]), torch.tensor([[-1.0, -2.0, nan]]),
                                    torch.tensor([[-1.5, -2.0, nan]]), mask, 0.1)
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 2.0, 0.0]]))   # −β·0.5; the score on the last real token
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, 0.0]]))
    torch.testing.assert_close(whiten(torch.tensor([[1.0, 3.0, nan]]), mask), torch.tensor([[-1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("how, message", [
    ("truncate weights", "is unreadable \\(truncated or overwritten\\?\\)"),
    ("truncate config", "is unreadable \\(truncated or overwritten\\?\\)"),
    ("NaN weights", "has NaN or infinite weights in \\['tok_emb.weight'\\]"),
    ("random bytes", "is unreadable"),
])
def test_a_damaged_checkpoint_is_refused_when_loaded(how, message, tiny_gpt, tmp_path):
    from minirlhf.model import GPT

    tiny_gpt.save_pretrained(tmp_path / "m")
    weights, config = tmp_path / "m" / "model.safetensors", tmp_path / "m" / "config.json"
    if how == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "truncate config":
        config.write_text(config.read_text()[:20])
    elif how == "random bytes":
        weights.write_bytes(os.urandom(4096))
    else:
        with torch.no_grad():
            tiny_gpt.tok_emb.weight[3, 1] = float("nan")
        tiny_gpt.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=message):
        GPT.from_pretrained(tmp_path / "m")


def test_saves_and_loads_at_once_never_see_a_missing_or_mixed_checkpoint(tmp_path):
    """Two processes save one model over and over while a third loads it until they are done: every load
    finds a whole checkpoint, and no save fails. (Without the swap lock, every one of 4 tries failed.)"""
    script = f"""
import sys, time, torch
from pathlib import Path
from minirlhf.checkpoint import load_checkpoint
from minirlhf.model import GPT, GPTConfig
path, role = Path({str(tmp_path / 'm')!r}), sys.argv[1]
torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=1, n_embd=8))
if role == "first":
    model.save_pretrained(path)
elif role.startswith("writer"):
    while not (path.parent / "reader.ready").exists():   # save once the reader is loading: on a busy machine
        time.sleep(0.01)                                  # its import can outlast all 100 saves (no load at all)
    for _ in range(100):
        model.save_pretrained(path)
    (path.parent / f"{{role}}.done").touch()
else:
    loads, start = 0, time.time()
    (path.parent / "reader.ready").touch()
    while not all((path.parent / f"writer{{i}}.done").exists() for i in (1, 2)) and time.time() - start < 120:
        config, tensors = load_checkpoint(path, GPT.model_type)
        assert torch.equal(tensors["tok_emb.weight"], model.tok_emb.weight)
        loads += 1
    assert loads > 0
"""
    subprocess.run([sys.executable, "-c", script, "first"], check=True, timeout=120)
    procs = [subprocess.Popen([sys.executable, "-c", script, role], stderr=subprocess.PIPE, text=True)
             for role in ("writer1", "writer2", "reader")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "m"], "temporary folders left behind"


def test_each_checkout_runs_its_own_package_in_its_notebooks():
    """A user-wide kernel pointed at whichever checkout installed it last: the kernel lives in the venv, and the
    tests run the notebooks on the Python that runs pytest."""
    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text()
    assert "ipykernel install --sys-prefix" in makefile and "ipykernel install --user" not in makefile
    assert "--nbval-current-env" in (root / "pyproject.toml").read_text()
