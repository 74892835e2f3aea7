"""The sandbox a submitted notebook's kernel runs in: it sees its own folder and nothing of a classmate's.

    python -m minirlhf.course.sandbox SPEC.json -f CONNECTION_FILE     (the argv of the grader's kernelspec)

The grader starts each submission's kernel through this module. It re-executes itself under
`unshare` in new PID and mount namespaces (and a user namespace when not run as root), then builds a
root file system of its own and `chroot`s into it:

    /usr, /etc, Python and its environment, the package    read-only
    the stage cache ($MINIRLHF_HOME)                          read-only (verified by the grader first)
    the submission's private copy                             the only folder it can write, with a fresh /tmp

and, when run as root, drops to the `nobody` user, so that it cannot remount what it was given read-only.
Nothing else of the machine is there: not the class folder, not grades.csv, not `solutions/`. When the
kernel (PID 1 of its namespace) ends, the Linux kernel kills every process the student started, detached
or not, so nothing of a submission outlives its row.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

NOBODY = 65534


def available() -> str | None:
    """None if sandboxes can be made here, else why not (and what to do)."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "the grader isolates each submission with Linux namespaces (`unshare`), which this machine lacks"
    probe = ["unshare", "--pid", "--fork", "--mount", *([] if os.getuid() == 0 else ["--user", "--map-root-user"]),
             "true"]
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        return (f"`{' '.join(probe)}` failed ({done.stderr.strip() or done.returncode}): run the grader as root, "
                "or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    return None


def kernel_argv(spec: Path) -> list[str]:
    """The kernelspec argv that starts a sandboxed kernel described by `spec` (see `write_spec`)."""
    return [sys.executable, "-m", "minirlhf.course.sandbox", str(spec), "-f", "{connection_file}"]


def write_spec(spec: Path, root: Path, work: Path, read_only: list[Path], env: dict) -> None:
    """`root`: an empty folder to build the file system in; `work`: the submission's copy (writable);
    `read_only`: the other folders it may read (the package, Python, the stage cache)."""
    spec.write_text(json.dumps({"root": str(root), "work": str(work), "read_only": [str(p) for p in read_only],
                                "env": env}))


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {done.stderr.strip()}")


def _bind(src: Path, root: Path, read_only: bool) -> None:
    target = root / src.relative_to("/")
    if src.is_symlink():           # /bin -> usr/bin on a merged /usr: the same link inside
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() and not target.is_symlink():
            target.symlink_to(os.readlink(src))
        return
    if not src.exists():
        return
    if src.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    _mount("--rbind" if src.is_dir() else "--bind", str(src), str(target))
    if read_only:
        _mount("-o", "remount,bind,ro", str(target))


def enter(spec: dict) -> None:
    """Inside the new namespaces: build the root, chroot into it, drop privileges."""
    root, work = Path(spec["root"]), Path(spec["work"])
    _mount("--make-rprivate", "/")
    _mount("-t", "tmpfs", "-o", "mode=755,size=64m", "tmpfs", str(root))
    for system in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"):
        _bind(Path(system), root, read_only=True)
    (root / "dev").mkdir(exist_ok=True)
    for device in ("null", "zero", "random", "urandom"):
        _bind(Path("/dev") / device, root, read_only=False)
    for scratch in ("tmp", "dev/shm"):   # before the binds: the submission's copy may live under /tmp
        (root / scratch).mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", "mode=1777,size=256m", "tmpfs", str(root / scratch))
    for path in spec["read_only"]:
        _bind(Path(path), root, read_only=True)
    _bind(work, root, read_only=False)
    (root / "proc").mkdir(exist_ok=True)
    _mount("-t", "proc", "proc", str(root / "proc"))   # this PID namespace's processes only
    os.chroot(root)
    os.chdir(work)
    if os.getuid() == 0 and "--user" not in os.environ.get("MINIRLHF_SANDBOX_NS", ""):
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        _die_with_parent()   # changing the user cleared the parent-death signal unshare --kill-child had set


def namespace_of(launcher_pid: int) -> str | None:
    """The PID namespace (as /proc shows it, "pid:[4026532…]") of the kernel a launched unshare started."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
        return os.readlink(f"/proc/{children[0]}/ns/pid") if children else None
    except OSError:
        return None


def kill_namespace(namespace: str, wait_s: float = 5.0) -> int:
    """SIGKILL every process of a PID namespace and wait until none is left; returns how many there were.
    Killing its PID 1 would do (the Linux kernel then kills the rest), but every one is signalled, so that
    nothing of a submission outlives its row whatever the student did to their process tree."""
    import signal
    import time

    def members() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "pid") == namespace:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    found = members()
    deadline = time.monotonic() + wait_s
    while (left := members()) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    return len(found)


def _die_with_parent() -> None:
    """SIGKILL this process (unshare, after the exec) when the grader dies, even by kill -9: the namespace's
    PID 1 then dies too (--kill-child), and with it every process of the submission."""
    import ctypes
    import signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str]) -> None:
    spec_path, rest = Path(argv[0]), argv[1:]
    spec = json.loads(spec_path.read_text())
    if os.environ.get("MINIRLHF_SANDBOX_NS") is None:   # outside: re-run this under unshare
        _die_with_parent()
        user = [] if os.getuid() == 0 else ["--user", "--map-root-user"]
        os.environ["MINIRLHF_SANDBOX_NS"] = " ".join(user) or "root"
        os.execvp("unshare", ["unshare", "--pid", "--fork", "--kill-child", "--mount", *user,
                              sys.executable, "-m", "minirlhf.course.sandbox", *argv])
    connection = Path(rest[rest.index("-f") + 1])
    key = connection.read_text()   # written for the grader's user: read it before dropping to nobody
    enter(spec)
    own = Path(spec["work"]) / ".kernel.json"
    own.write_text(key)
    own.chmod(0o600)
    rest[rest.index("-f") + 1] = str(own)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "MINIRLHF_FAST", "MINIRLHF_HOME",
                                                        "MINIRLHF_THREADS", "OMP_NUM_THREADS", "PYTHONHASHSEED")}
    env.update(spec["env"], HOME=spec["work"], MPLCONFIGDIR=str(Path(spec["work"]) / ".matplotlib"),
               IPYTHONDIR=str(Path(spec["work"]) / ".ipython"), TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1")
    os.execve(sys.executable, [sys.executable, "-m", "minirlhf.course.worker", *rest], env)


if __name__ == "__main__":
    main(sys.argv[1:])
