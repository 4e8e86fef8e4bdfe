"""Run model-written Python in isolation: the one way ThoughtScope executes generated code.

Every snippet runs in a fresh process, never in the app's own interpreter:

- **bubblewrap** (``bwrap``, isolation ``"bwrap"``) when it is installed and works here (probed
  once): new user, PID, network, IPC, UTS and cgroup namespaces, so no network and no view of
  other processes; a file system holding only the read-only interpreter and system libraries
  (``/usr``, ``/lib*``, ``/bin``), a minimal ``/dev`` and the private work folder (no ``/tmp``,
  no ``/proc``, no ``/etc``, no home); every capability dropped; a new session (no terminal injection); killed with its parent.
- **the fallback** where bubblewrap is missing or cannot create namespaces (containers often
  forbid them): ``unshare`` for network and PID namespaces where that works unprivileged
  (isolation ``"rlimits+unshare"``), otherwise a plain subprocess (``"rlimits"``). The fallback
  cannot hide the file system: the snippet could read what a user of its uid can read. It is
  mitigated, not closed, by the audit hook below and, when the app runs as root, by running
  the snippet as ``nobody``. docs/sandbox.md says exactly what each level prevents.

In every mode: the interpreter runs isolated (``python -I -S -B``: no user site, no
environment variables, no ``site``, no bytecode written) with a cleared environment, its
working directory a private temporary folder deleted afterwards; resource limits (CPU seconds,
address space, processes, file size, open files, no core files) set before the snippet starts;
a wall-clock timeout that kills the whole process group; output (stdout and stderr together)
written to a file capped by the file-size limit and read back to at most ``output_bytes``.

The audit hook (``sys.addaudithook``, installed before the snippet) refuses opening files
outside the work folder (reading the standard library is allowed), sockets, subprocesses,
``os.system``/``exec``/``fork``/``kill``, ``ctypes`` and changing limits. It is defence in
depth, not a boundary: CPython's audit hooks are documented as bypassable by determined code.

Resource limits are set by the sandbox's own runner (first lines of the child process) rather
than a ``preexec_fn``, because ``preexec_fn`` is unsafe in a threaded parent such as the
Gradio server.

Not here: deciding what to run (engine/search/code_mcts.py) or showing it (app/).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ISOLATIONS = ("bwrap", "rlimits+unshare", "rlimits")   # strongest first
STATUSES = ("ok", "error", "timeout", "killed")
NOBODY = 65534                  # uid/gid the snippet runs as when the app runs as root
FORCE_ENV = "THOUGHTSCOPE_SANDBOX"   # set to a name from ISOLATIONS to force that level
SANDBOX_DIR = "/sandbox"        # the work folder's path inside bubblewrap
SAFE_PATH = "/usr/bin:/bin"
_BWRAP_EXIT_SIGNAL = 128        # bwrap exits 128 + n when its child died of signal n


class SandboxUnavailable(RuntimeError):
    """The requested isolation does not work on this machine."""


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 2              # CPU seconds (SIGXCPU, then SIGKILL one second later)
    wall_s: float = 3.0         # wall clock; the process group is killed after it
    memory_mb: int = 256        # address space
    processes: int = 8          # processes beyond those the sandbox uid already runs
    file_kb: int = 256          # largest file the snippet may write, its output included
    open_files: int = 32
    output_bytes: int = 4096    # output kept and returned

    def __post_init__(self) -> None:
        for name, lo, hi in (("cpu_s", 1, 600), ("wall_s", 0.1, 600), ("memory_mb", 32, 65536),
                             ("processes", 1, 4096), ("file_kb", 1, 1 << 20), ("open_files", 8, 4096),
                             ("output_bytes", 64, 1 << 20)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be a number from {lo} to {hi}, got {v!r}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Result:
    status: str                 # ok | error | timeout | killed
    output: str                 # stdout and stderr, interleaved, at most output_bytes
    seconds: float              # wall time of the child process
    isolation: str
    returncode: int | None = None
    truncated: bool = False

    def to_json(self) -> dict:
        return asdict(self)


# The child's first lines: limits, then the hook, then the snippet read from stdin. Kept to
# the standard library's core so it runs under -I -S with nothing installed.
RUNNER = r'''
import os, sys, resource, traceback
cpu, mem, nproc, fsize, nofile = (int(a) for a in sys.argv[1:6])
harden = sys.argv[6] == "1"
for r, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                      (resource.RLIMIT_NPROC, nproc, nproc), (resource.RLIMIT_FSIZE, fsize, fsize),
                      (resource.RLIMIT_NOFILE, nofile, nofile), (resource.RLIMIT_CORE, 0, 0)):
    resource.setrlimit(r, (soft, hard))
code = sys.stdin.read()
os.close(0)
if harden:
    _home = os.path.realpath(os.getcwd())
    _lib = os.path.realpath(os.path.dirname(os.__file__))
    _join, _real, _fsdecode = os.path.join, os.path.realpath, os.fsdecode
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                "os.forkpty", "os.kill", "os.killpg", "pty.", "ctypes.", "resource.setrlimit",
                "resource.prlimit", "os.setuid", "os.setgid", "sys.remote_exec", "webbrowser.", "urllib.")
    _NO_IMPORT = {"ctypes", "_ctypes", "socket", "_socket", "subprocess", "_posixsubprocess", "multiprocessing",
                  "_multiprocessing", "ssl", "_ssl", "pty", "asyncio", "http", "urllib", "ftplib", "smtplib",
                  "telnetlib", "select", "selectors", "mmap", "signal", "_signal", "faulthandler", "resource"}
    _PATHS = {"os.remove": 1, "os.rename": 2, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1,
              "os.utime": 1, "os.truncate": 1, "os.link": 2, "os.symlink": 2, "os.chdir": 1,
              "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.move": 2}
    _LISTS = ("os.listdir", "os.scandir")   # reads: the import system lists package folders

    def _inside(path, root):
        p = _real(_join(_home, _fsdecode(path)))
        return p == root or p.startswith(root + os.sep)

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writes = (flags or 0) & _WRITE or any(c in (mode or "") for c in "wax+")
            if _inside(path, _home) or (not writes and _inside(path, _lib)):
                return
            raise PermissionError(f"sandbox: opening {path!r} is not allowed")
        if event == "import":
            if args[0].split(".")[0] in _NO_IMPORT:
                raise PermissionError(f"sandbox: importing {args[0]!r} is not allowed")
            return
        if event.startswith(_BLOCKED):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event in _LISTS:
            path = args[0] if args and args[0] is not None else "."
            if isinstance(path, int) or _inside(path, _home) or _inside(path, _lib):
                return
            raise PermissionError(f"sandbox: {event} on {path!r} is not allowed")
        n = _PATHS.get(event)
        if n is not None:
            for path in args[:n]:
                if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, _home):
                    raise PermissionError(f"sandbox: {event} on {path!r} is not allowed")

    sys.addaudithook(_hook)
try:
    exec(compile(code, "<model code>", "exec"), {"__name__": "__main__"})
except SystemExit:
    raise
except BaseException as e:
    sys.stdout.flush()
    traceback.print_exception(type(e), e, e.__traceback__.tb_next)
    sys.exit(1)
'''


# ---- probing --------------------------------------------------------------------------------

def _candidate_interpreters() -> list[str]:
    """Interpreters the sandbox may run, best first: this one's base (the venv's own Python),
    then the system's. Any core Python 3 will do; the snippet gets no installed packages."""
    seen, out = set(), []
    for p in (getattr(sys, "_base_executable", None) or sys.executable, shutil.which("python3", path=SAFE_PATH)):
        if p and os.path.exists(p):
            real = os.path.realpath(p)
            if real not in seen:
                seen.add(real)
                out.append(real)
    return out


def _drop_to_nobody() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _processes_of(uid: int) -> int:
    """How many processes ``uid`` runs now (RLIMIT_NPROC counts them all, system-wide)."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _interp_prefix(python: str) -> str:
    """The installation folder of ``python`` (``/usr`` for /usr/bin/python3)."""
    return str(Path(python).resolve().parent.parent)


def _command(isolation: str, python: str, workdir: str, args: list[str]) -> list[str]:
    core = ["-I", "-S", "-B", "-c", RUNNER, *args]
    if isolation == "bwrap":
        cmd = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--clearenv", "--setenv", "PATH", SAFE_PATH, "--setenv", "LANG", "C.UTF-8",
               "--ro-bind", "/usr", "/usr"]
        for d in ("/lib", "/lib64", "/lib32", "/bin"):
            cmd += ["--ro-bind-try", d, d]
        prefix = _interp_prefix(python)
        if not (prefix == "/usr" or prefix.startswith("/usr/")):
            cmd += ["--ro-bind", prefix, prefix]
        # no tmpfs: its pages would not count against the snippet's memory limit; the work folder
        # (on disk, deleted afterwards) is the only writable place, and TMPDIR points there
        cmd += ["--setenv", "TMPDIR", SANDBOX_DIR, "--dev", "/dev", "--bind", workdir, SANDBOX_DIR,
                "--chdir", SANDBOX_DIR, "--hostname", "sandbox", "--", python, *core]
        return cmd
    if isolation == "rlimits+unshare":
        return [shutil.which("unshare") or "unshare", "--user", "--map-root-user", "--net", "--pid", "--fork",
                "--kill-child", "--", python, *core]
    return [python, *core]


@functools.lru_cache(maxsize=None)
def _probe(isolation: str) -> str | None:
    """The interpreter with which ``isolation`` works here, or None (probed once per process)."""
    if isolation == "bwrap" and not shutil.which("bwrap"):
        return None
    if isolation == "rlimits+unshare" and not shutil.which("unshare"):
        return None
    for python in _candidate_interpreters():
        try:
            r = _execute("print(6 * 7)", DEFAULT_LIMITS, isolation, python, harden=True)
        except OSError:
            continue
        if r.status == "ok" and r.output.strip() == "42":
            return python
    return None


def available() -> dict[str, bool]:
    """Which isolation levels work on this machine."""
    return {name: _probe(name) is not None for name in ISOLATIONS}


def isolation() -> str:
    """The isolation ``run_code`` uses by default: the strongest that works, or the level named
    in $THOUGHTSCOPE_SANDBOX. Raises SandboxUnavailable when none works."""
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced:
        if forced not in ISOLATIONS:
            raise ValueError(f"${FORCE_ENV} must be one of {ISOLATIONS}, got {forced!r}")
        if _probe(forced) is None:
            raise SandboxUnavailable(f"sandbox isolation {forced!r} (from ${FORCE_ENV}) does not work here")
        return forced
    for name in ISOLATIONS:
        if _probe(name) is not None:
            return name
    raise SandboxUnavailable("no sandbox works here: not even a Python subprocess with resource limits started")


def describe(name: str | None = None) -> str:
    """One line for the UI: which isolation model-written code runs under."""
    try:
        name = name or isolation()
    except (SandboxUnavailable, ValueError) as e:
        return f"code sandbox unavailable: {e}"
    return {"bwrap": "bubblewrap: no network, no user files, read-only interpreter, resource limits",
            "rlimits+unshare": "fallback: no network (unshare), resource limits, audit hook; "
                               "world-readable files are not hidden (bubblewrap not in use)",
            "rlimits": "weakest fallback: resource limits and an audit hook only; network and world-readable "
                       "files are blocked by the hook alone, which is not a security boundary "
                       "(bubblewrap not in use)"}[name]


# ---- running --------------------------------------------------------------------------------

def run_code(code: str, *, limits: Limits = DEFAULT_LIMITS, isolation_level: str | None = None,
             harden: bool = True) -> Result:
    """Run ``code`` in the sandbox and report what happened.

    ``isolation_level``: a name from ISOLATIONS (default: the strongest that works here).
    ``harden``: install the audit hook (always on in the app; tests turn it off to check that
    the operating-system layer contains a snippet on its own).
    """
    if not isinstance(code, str):
        raise ValueError(f"code must be a str, got {type(code).__name__}")
    name = isolation_level or isolation()
    if name not in ISOLATIONS:
        raise ValueError(f"isolation_level must be one of {ISOLATIONS}, got {name!r}")
    python = _probe(name)
    if python is None:
        raise SandboxUnavailable(f"sandbox isolation {name!r} does not work here")
    return _execute(code, limits, name, python, harden=harden)


def _execute(code: str, limits: Limits, name: str, python: str, *, harden: bool) -> Result:
    drop = _drop_to_nobody()
    uid = NOBODY if drop else os.getuid()
    nproc = _processes_of(uid) + limits.processes + (3 if name != "rlimits" else 0)  # bwrap/unshare helpers
    args = [str(limits.cpu_s), str(limits.memory_mb << 20), str(nproc), str(limits.file_kb << 10),
            str(limits.open_files), "1" if harden else "0"]
    private = tempfile.mkdtemp(prefix="ts-sandbox-io-")        # code and output: the parent's only
    work = tempfile.mkdtemp(prefix="ts-sandbox-")             # the snippet's work folder
    try:
        if drop:
            os.chown(work, NOBODY, NOBODY)
        code_path, out_path = os.path.join(private, "code.py"), os.path.join(private, "output")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
        extra = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if drop else {}
        with open(code_path, "rb") as stdin, open(out_path, "wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(_command(name, python, work, args), stdin=stdin, stdout=out, stderr=out,
                                    cwd=work, env=env, start_new_session=True, close_fds=True, **extra)
            timed_out = False
            try:
                rc = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                rc = proc.wait()
            seconds = time.perf_counter() - t0
        _kill_group(proc)      # anything the snippet left behind in its group
        with open(out_path, "rb") as f:
            raw = f.read(limits.output_bytes + 1)
        size = os.path.getsize(out_path)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    truncated = size > limits.output_bytes
    output = raw[:limits.output_bytes].decode("utf-8", errors="replace")
    if truncated:
        output += f"\n[output truncated: {size} bytes written, {limits.output_bytes} kept"
        output += ", file-size limit reached]" if size >= limits.file_kb << 10 else "]"
    status, note = _status(rc, timed_out, name)
    if note:
        output = (output + ("\n" if output and not output.endswith("\n") else "") + note)
    return Result(status=status, output=output, seconds=round(seconds, 4), isolation=name, returncode=rc,
                  truncated=truncated)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status(rc: int, timed_out: bool, name: str) -> tuple[str, str]:
    """(status, a note for the output) from the child's exit."""
    if timed_out:
        return "timeout", "[sandbox: wall-clock limit reached, process group killed]"
    sig = -rc if rc < 0 else (rc - _BWRAP_EXIT_SIGNAL if name == "bwrap" and rc > _BWRAP_EXIT_SIGNAL else 0)
    if sig:
        sig_name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", f"[sandbox: CPU-time limit reached ({sig_name})]"
        return "killed", f"[sandbox: killed by {sig_name}]"
    return ("ok", "") if rc == 0 else ("error", "")
