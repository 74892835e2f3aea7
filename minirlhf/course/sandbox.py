"""The sandbox a submitted notebook's kernel runs in: it sees its own folder and nothing of a classmate's.

    python -m minirlhf.course.sandbox SPEC.json -f CONNECTION_FILE     (the argv of the grader's kernelspec)

The grader starts each submission's kernel through this module. It re-executes itself under
`unshare` in new PID, mount and network namespaces (and a user namespace when not run as root: no
network at all, the grader talks to it over Unix sockets in its folder), then builds a
root file system of its own and pivots into it (the machine's root unmounted):

    /usr, /etc, Python and its environment, the package    read-only
    the stage cache ($MINIRLHF_HOME)                          read-only (verified by the grader first)
    the submission's private copy                             the only folder it can write, with a fresh /tmp

It keeps no capability (so it cannot remount what it was given read-only) and gains none (no_new_privs);
when the grader runs as root, the kernel also runs as the `nobody` user.
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
    probe = ["unshare", "--pid", "--fork", "--mount", "--net",
             *([] if os.getuid() == 0 else ["--user", "--map-root-user"]), "true"]
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
    """Inside the new namespaces: build the root, pivot into it, drop privileges."""
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
    # pivot_root, not chroot: the machine's root is unmounted from this namespace, so no chroot trick climbs
    # back out of it
    (root / ".old_root").mkdir()
    os.chdir(root)
    done = subprocess.run(["pivot_root", ".", ".old_root"], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"pivot_root: {done.stderr.strip()}")
    os.chdir("/")
    _unmount_lazily("/.old_root")
    os.rmdir("/.old_root")
    os.chdir(work)
    _drop_privileges(as_root=os.getuid() == 0 and "--user" not in os.environ.get("MINIRLHF_SANDBOX_NS", ""))


def _unmount_lazily(path: str) -> None:
    done = subprocess.run(["umount", "-l", path], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"umount -l {path}: {done.stderr.strip()}")


def _drop_privileges(as_root: bool) -> None:
    """No capability left, none to gain (no setuid binary works: no_new_privs), and, as real root, the
    `nobody` user. (In a user namespace, where only our own user is mapped, `exec_kernel` drops the
    capabilities with setpriv instead.)"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap)   # EINVAL past the last capability this kernel knows: ignored
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if as_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)   # from root to another user: the permitted capabilities are cleared
        _die_with_parent()   # changing the user cleared the parent-death signal unshare --kill-child had set


def namespace_init(launcher_pid: int) -> int | None:
    """A pidfd of the kernel a launched unshare started: PID 1 of the submission's PID namespace. A pidfd,
    not a PID: a PID can be reused by another process once this one is gone, a pidfd cannot."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
        return os.pidfd_open(int(children[0])) if children else None
    except OSError:
        return None


def kill_namespace(init_pidfd: int, wait_s: float = 5.0) -> bool:
    """SIGKILL PID 1 of a submission's namespace: the Linux kernel then kills every other process of it, and
    PID 1 ends only once they all have. Returns whether it ended within `wait_s`."""
    import select
    import signal
    try:
        try:
            signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
        except ProcessLookupError:   # already gone (and its namespace with it)
            return True
        poll = select.poll()
        poll.register(init_pidfd, select.POLLIN)   # readable once the process has ended
        return bool(poll.poll(wait_s * 1000))
    finally:
        os.close(init_pidfd)


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
        os.execvp("unshare", ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--net", *user,
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
    kernel = [sys.executable, "-m", "minirlhf.course.worker", *rest]
    if os.getuid() == 0:   # root of a user namespace (not real root, see enter): clear the capabilities it holds
        kernel = ["/usr/bin/setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
                  "--no-new-privs", "--", *kernel]
    os.execve(kernel[0], kernel, env)


if __name__ == "__main__":
    main(sys.argv[1:])
