"""The sandbox's fork server. Runs as its own interpreter (``python -I -S _worker.py``),
started by :class:`lmgym.sandbox.Sandbox`; imports only the standard library.

Protocol on stdin/stdout: each message is a 4-byte big-endian length and a UTF-8 JSON object.
The host sends a job; the worker forks one child per job, which runs the untrusted program
and its tests under the limits, reports each test's outcome on a pipe, and exits. The
worker enforces the wall-time limit, kills the child's whole process group, removes the
scratch directory and sends the host one verdict.

The worker itself never runs untrusted code: everything after ``os.fork()`` in
``_child`` does, under rlimits, a fresh session, a dropped uid (when started as root),
an empty network namespace (when the kernel allows one) and an audit-hook policy.
"""

import builtins
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time

# The modules that HumanEval and MBPP solutions import (re, math, collections, typing, heapq,
# itertools, ... by frequency), loaded once here so that children start warm. Every module
# kept here makes each fork slower (more memory to map), so rarer ones are left to the child.
PRELOAD = (
    "math", "re", "string", "collections", "itertools", "functools", "heapq", "bisect",
    "typing", "operator", "random", "copy", "cmath", "array",
    "_posixsubprocess",  # loaded here so that the child can disarm it (see _block_fork_exec)
)
KINDS = ("passed", "syntax_error", "assertion", "exception", "timeout", "memory", "killed",
         "output_limit", "forbidden", "exit", "not_run")
TAIL = 2000
MAX_REPORT = 1 << 20


# --- host <-> worker messages ----------------------------------------------------------------


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _receive(fd):
    header = _read_exact(fd, 4)
    if header is None:
        return None
    return json.loads(_read_exact(fd, struct.unpack(">I", header)[0]))


def _send(fd, message):
    data = json.dumps(message).encode("utf-8")
    os.write(fd, struct.pack(">I", len(data)) + data)


# --- isolation available to this machine ---------------------------------------------------


def _isolate_network():
    """Move this worker (and so every child) into a new, empty network namespace.

    Returns (isolated, prctl): prctl is libc's, kept for the child to make itself dumpable
    again after dropping its uid (so that it can read its own /proc/self/fd). ctypes is
    then removed from ``sys.modules`` (and the child's policy forbids loading or calling it).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # Orphans of a child (a daemon that double-forked and called setsid) become this
        # worker's children, so that _sweep finds and kills them.
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        return libc.unshare(0x40000000) == 0, libc.prctl  # CLONE_NEWNET
    except Exception:
        return False, None
    finally:
        for name in [name for name in sys.modules if name == "ctypes" or name.startswith(("ctypes.", "_ctypes"))]:
            del sys.modules[name]


def _world_readable(path):
    """Whether every directory up to ``path`` lets others in (so a dropped uid can import from it)."""
    path = os.path.abspath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return True  # a missing entry is harmless
        if not mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _import_path_fds():
    """For sys.path entries a dropped uid could not reach (a Python installed under /root,
    say), open the directory now and let the child import through /proc/self/fd/N."""
    mapping = {}
    for entry in sys.path:
        if entry and os.path.isdir(entry) and not _world_readable(entry):
            mapping[entry] = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    return mapping


def _nobody():
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (KeyError, ImportError):
        return 65534, 65534


def _processes_of(uid):
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


# --- the child: runs untrusted code ----------------------------------------------------------


class _Violation(PermissionError):
    """Raised by the audit hook when the program attempts something the sandbox forbids."""


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DENIED = frozenset((
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
    "pty.spawn", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "sys.addaudithook", "sys.remote_exec",
))
_PATH_EVENTS = {  # event -> positions of path arguments that must stay inside the scratch dir
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
    "os.chown": (0,), "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (1,),
    "os.chflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
}


def _install_policy(scratch, violations):
    """An audit hook: no processes, sockets, foreign calls through ctypes (importing it is
    fine) or heap walking (threads are allowed, counted against RLIMIT_NPROC); writes only
    inside ``scratch``; no reading other processes' /proc entries; signals only to itself.

    This is a policy layer on top of the OS limits, not the boundary itself: it catches
    the generic escapes (and records them, so that an attempt scores 0 even if the program
    catches the exception), while the separate process, rlimits, uid and network namespace
    contain what gets past it.
    """
    realpath, fspath, getpid, startswith = os.path.realpath, os.fspath, os.getpid, str.startswith
    own_pid = getpid()
    own_proc = (f"/proc/{own_pid}", "/proc/self", "/proc/thread-self")
    prefix = scratch + os.sep
    append = violations.append
    allowed_writes = ("/dev/null",)

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            path = realpath(fspath(path))
        except Exception:
            return False
        return path == scratch or startswith(path, prefix) or path in allowed_writes

    def deny(event, detail):
        append(f"{event}: {detail}")
        raise _Violation(f"lmgym sandbox: {event} is not allowed ({detail})")

    def hook(event, args):
        if event == "ctypes.dlopen":  # importing ctypes (numpy does) loads libc: fine; a dropped .so is not
            if args and args[0] is not None and inside(args[0]):
                deny(event, f"loading {args[0]!r} from the scratch directory")
        elif event in _DENIED or startswith(event, ("socket.", "ctypes.")):
            deny(event, "forbidden operation")
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writing and not inside(path):
                deny(event, f"writing {path!r} outside the scratch directory")
            try:
                resolved = realpath(fspath(path))
            except Exception:
                return
            if startswith(resolved, "/proc/") and not startswith(resolved, own_proc):
                deny(event, f"reading {path!r} (another process)")
        elif event in _PATH_EVENTS:
            for position in _PATH_EVENTS[event]:
                if position < len(args) and not inside(args[position]):
                    deny(event, f"{args[position]!r} is outside the scratch directory")
        elif event == "os.kill" or event == "os.killpg":
            if args[0] not in (0, own_pid):
                deny(event, f"signal to process {args[0]}")
        elif event == "import" and args[0] in ("_xxsubinterpreters", "_xxinterpchannels"):
            deny(event, f"module {args[0]}")

    sys.addaudithook(hook)


def _block_fork_exec(violations):
    """``_posixsubprocess.fork_exec`` starts processes without an audit event: replace it."""
    module = sys.modules.get("_posixsubprocess")
    if module is None:
        return

    def fork_exec(*args, **kwargs):
        violations.append("_posixsubprocess.fork_exec: forbidden operation")
        raise _Violation("lmgym sandbox: starting processes is not allowed")

    module.fork_exec = fork_exec


def _untrusted_classes_check(trusted_types):
    """A ``==`` for the tests that refuses objects whose equality the program defined.

    A policy under RL pressure learns to return an object whose ``__eq__`` always answers
    True. A comparison in which one side holds instances of a class created by the program
    that overrides ``__eq__``/``__ne__`` in Python, and the other side holds none of that
    class (a literal expected value, say), raises ``_FakeEquality`` instead of passing.
    Containers are searched (bounded); comparing two such objects with each other is allowed.
    """
    type_, isinstance_, id_, len_ = type, isinstance, id, len
    containers = (list, tuple, set, frozenset)

    def fake(cls):
        for klass in cls.__mro__:
            if trusted_types.get(id_(klass)) is klass:
                return False
            namespace = klass.__dict__
            for name in ("__eq__", "__ne__"):
                code = getattr(namespace.get(name), "__code__", None)
                if code is None:  # not overridden here, or implemented in C (not by the program)
                    continue
                filename = code.co_filename
                if not (filename.startswith(sys.base_prefix) or filename.startswith(sys.prefix)):
                    return True
        return False

    def fakes(value):
        found, stack, budget = set(), [value], 100_000
        while stack and budget > 0:
            item = stack.pop()
            budget -= 1
            cls = type_(item)
            if trusted_types.get(id_(cls)) is not cls and fake(cls):
                found.add(cls)
            if isinstance_(item, containers):
                if len_(item) <= 10_000:
                    stack.extend(item)
            elif isinstance_(item, dict) and len_(item) <= 10_000:
                stack.extend(item.keys())
                stack.extend(item.values())
        return found

    def eq(left, right):
        left_fakes, right_fakes = fakes(left), fakes(right)
        if left_fakes != right_fakes:
            cls = next(iter(left_fakes ^ right_fakes))
            raise _FakeEquality(f"comparison with an instance of {cls.__qualname__}, which overrides equality")
        return left == right

    return eq


class _FakeEquality(Exception):
    pass


_COMPILED = {}  # test source -> code: tests repeat across samples, and children inherit this


def _compile_test(source, index):
    key = (source, index)
    code = _COMPILED.get(key)
    if code is None:  # the host has already rewritten ``a == b`` into ``__lmgym_eq__(a, b)``
        code = compile(source, f"<test {index}>", "exec")
        if len(_COMPILED) > 50_000:
            _COMPILED.clear()
        _COMPILED[key] = code
    return code


def _compile_job(job):
    """The job's setup and tests, compiled in the worker (trusted code) before the fork."""
    try:
        compiled = [_compile_test(job["setup"], "setup")] if job["setup"] else []
        compiled += [_compile_test(test, i) for i, test in enumerate(job["tests"])]
        return compiled, None
    except BaseException as error:
        return None, f"{type(error).__name__}: {error}"


def _names(code, found):
    found.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, type(code)):
            _names(const, found)
    return found


def _watched_builtins(compiled):
    """(name, object) for the builtins the tests look up: the ones a program could rebind to
    fake a pass (``abs``, ``len``, ``sorted``, ``isinstance``, ...)."""
    names = set()
    for code in compiled or ():
        _names(code, names)
    names.update(("__import__", "__build_class__", "AssertionError", "isinstance", "type"))
    return [(name, _REAL_BUILTINS[name]) for name in sorted(names) if name in _REAL_BUILTINS]


# Snapshots the child compares against after the program ran (taken once, before any fork).
_REAL_BUILTINS = dict(builtins.__dict__)
_CORE_METHODS = [(cls, name, cls.__dict__[name]) for cls in (int, float, str, bool, list, tuple, dict, set, frozenset,
                 type(None), object, complex, bytes) for name in ("__eq__", "__ne__", "__bool__", "__hash__",
                 "__len__") if name in cls.__dict__]


def _child(job, report_fd, scratch, limits_state, trusted_types):
    """Runs in the forked child. Never returns: ends with os._exit."""
    write, exit_, perf, str_, type_ = os.write, os._exit, time.perf_counter, str, type
    settrace, setprofile = sys.settrace, sys.setprofile

    def report(line):
        write(report_fd, line.replace("\n", " ").encode("utf-8", "replace")[:8000] + b"\n")

    def outcome(index, kind, seconds, message=""):
        report(f"T\t{index}\t{kind}\t{seconds:.6f}\t{message}")

    try:
        os.setsid()
        for fd, path, flags in ((0, "/dev/null", os.O_RDONLY),
                                (1, os.path.join(scratch, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, os.path.join(scratch, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            new = os.open(path, flags, 0o600)
            os.dup2(new, fd)
            os.close(new)
        keep = sorted({report_fd, *limits_state["path_fds"].values()})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 65536)
        uid = limits_state["uid"]
        if uid is not None:
            os.chown(os.path.join(scratch, "stdout"), *uid)
            os.chown(os.path.join(scratch, "stderr"), *uid)
            os.setgroups([])
            os.setgid(uid[1])
            os.setuid(uid[0])
            if limits_state["path_fds"]:
                limits_state["prctl"](4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/fd readable again
        os.chdir(scratch)
        os.environ["HOME"] = os.environ["TMPDIR"] = scratch  # the rest was scrubbed by the worker
        if "random" in sys.modules:
            sys.modules["random"].seed(0)  # the same program gets the same verdict
        memory = job["memory_mb"] << 20
        cpu = max(1, int(job["cpu_time"] + 0.999))
        for name, value in (("RLIMIT_AS", memory), ("RLIMIT_DATA", memory), ("RLIMIT_CPU", cpu),
                            ("RLIMIT_FSIZE", job["max_output_bytes"]), ("RLIMIT_NOFILE", job["open_files"]),
                            ("RLIMIT_NPROC", limits_state["nproc"]), ("RLIMIT_CORE", 0)):
            # CPU: SIGXCPU at the soft limit (reported as a timeout), SIGKILL a second later.
            resource.setrlimit(getattr(resource, name), (value, value + 1 if name == "RLIMIT_CPU" else value))
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
        sys.stdin, sys.stdout, sys.stderr = _STDIO  # made by the worker; now on the redirected fds
        # Everything the harness uses once the program has run is bound here, as locals: the
        # program can rebind module globals and builtins, not this frame's variables.
        builtins_module, builtins_dict, watched = builtins, builtins.__dict__, limits_state["watched_builtins"]
        core_methods, get_attr = _CORE_METHODS, getattr
        isinstance_, sorted_ = isinstance, sorted
        violation_types, assertion_error, memory_error, os_error, system_exit, syntax_error = (
            (_Violation, _FakeEquality), AssertionError, MemoryError, OSError, SystemExit, SyntaxError)
        violations = []
        _install_policy(scratch, violations)
        _block_fork_exec(violations)
        equal = _untrusted_classes_check(trusted_types)
    except BaseException as error:  # the sandbox could not be set up: never run the program
        report(f"E\tsetup failed: {type(error).__name__}: {error}")
        exit_(0)

    def tampering():
        """A detected attempt to fake a pass: a policy violation, a rebound builtin that the
        tests use, or a replaced comparison method of a core type."""
        if violations:
            return "attempted " + violations[0]
        changed = [name for name, value in watched if builtins_dict.get(name) is not value]
        if changed:
            return f"modified builtins the tests use: {sorted_(changed)[:5]}"
        for cls, name, method in core_methods:
            if get_attr(cls, "__dict__").get(name) is not method:
                return f"modified {cls.__name__}.{name}"
        return None

    def classify(error):
        if isinstance_(error, violation_types) or violations:
            return "forbidden"
        if isinstance_(error, assertion_error):
            return "assertion"
        if isinstance_(error, memory_error):
            return "memory"
        if isinstance_(error, os_error) and error.errno == 27:  # EFBIG: over the file-size limit
            return "output_limit"
        if isinstance_(error, system_exit):
            return "exit"
        if isinstance_(error, syntax_error):
            return "syntax_error"
        return "exception"

    def describe(error):
        try:
            text = str_(error)
        except BaseException:
            text = "<unprintable>"
        return f"{type_(error).__name__}: {text}"[:1000]

    start = perf()
    try:
        code = compile(job["program"], "<candidate>", "exec")
    except BaseException as error:
        report(f"P\tsyntax_error\t{perf() - start:.6f}\t{describe(error)}")
        exit_(0)
    namespace = {"__name__": "__candidate__"}

    def run(code):
        """Execute ``code`` in the program's namespace, with the real builtins and the guarded
        comparison put back first (the program may have rebound both); ``(kind, message)``."""
        namespace["__builtins__"] = builtins_module
        namespace["__lmgym_eq__"] = equal
        try:
            exec(code, namespace)
            return "passed", ""
        except BaseException as error:
            return classify(error), describe(error)
        finally:
            settrace(None)
            setprofile(None)

    kind, message = run(code)
    if kind == "passed":
        problem = tampering()
        if problem:
            kind, message = "forbidden", problem
    report(f"P\t{kind}\t{perf() - start:.6f}\t{message}")
    if kind != "passed":
        exit_(0)
    compiled, error = limits_state["compiled"]
    if compiled is None:
        report(f"E\ttest code does not compile: {error}")
        exit_(0)
    compiled = list(compiled)
    if job["setup"]:
        kind, message = run(compiled.pop(0))
        if kind != "passed":
            report(f"S\t{kind}\t{message}")
            exit_(0)
    for index, test in enumerate(compiled):
        began = perf()
        kind, message = run(test)
        outcome(index, kind, perf() - began, message)
    problem = tampering()  # once, after all tests: any detected fake voids the whole run
    if problem:
        report(f"F\t{problem}")
    report("D")
    exit_(0)


# --- the worker loop -----------------------------------------------------------------------


def _remove_tree(path):
    """``shutil.rmtree`` without following symlinks, written out so that the worker (and so
    every fork) does not carry shutil's imports (zlib, bz2, lzma)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _tail(path, size):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            length = handle.tell()
            handle.seek(max(0, length - size))
            return handle.read().decode("utf-8", "replace"), length
    except OSError:
        return "", 0


def _collect(pid, read_fd, deadline):
    """Read the child's report until it is complete, the child exits, or the deadline passes.

    Returns (lines, status, timed_out); status is None when the report was complete (the
    child is then killed and reaped later, so that its exit overlaps the next job)."""
    buffer, timed_out, status = b"", False, None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        if len(buffer) < MAX_REPORT:
            buffer += chunk
        if buffer.endswith(b"\nD\n") or buffer == b"D\n":
            break
    complete = not timed_out and (buffer.endswith(b"\nD\n") or buffer == b"D\n")
    if not complete and not timed_out:  # the report channel closed early: wait for the exit itself
        timed_out = not _wait_exit(pid, deadline)
    try:  # nothing the program started may outlive it (the report is complete, or time is up)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if complete:
        _ZOMBIES.append(pid)
    else:
        _, status = os.waitpid(pid, 0)
    lines = buffer.decode("utf-8", "replace").split("\n")[:-1]
    return lines, status, timed_out


_ZOMBIES = []
_STDIO = None


def _wait_exit(pid, deadline):
    """Whether the child exits before the deadline (it stays a zombie for waitpid)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if fd is not None:
                if select.select([fd], [], [], remaining)[0]:
                    return True
            else:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
                time.sleep(min(0.005, remaining))
    finally:
        if fd is not None:
            os.close(fd)


def _sweep():
    """Kill every child of this worker (the last job's child, and any orphan it left behind,
    reparented here by PR_SET_CHILD_SUBREAPER); they are reaped later."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as handle:
            pids = [int(pid) for pid in handle.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        if pid not in _ZOMBIES:
            _ZOMBIES.append(pid)


def _reap():
    for pid in list(_ZOMBIES):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _ZOMBIES.remove(pid)


def _verdict(job, lines, status, timed_out, scratch, seconds):
    tests = [{"passed": False, "kind": "not_run", "message": "", "seconds": 0.0} for _ in job["tests"]]
    kind, message, done, program_ok = None, "", False, False
    for line in lines:
        fields = line.split("\t")
        tag = fields[0]
        if tag == "P" and len(fields) >= 4:
            program_ok = fields[1] == "passed"
            if not program_ok and fields[1] in KINDS:
                kind, message = fields[1], fields[3]
        elif tag == "T" and len(fields) >= 5 and fields[1].isdigit() and fields[2] in KINDS:
            index = int(fields[1])
            if index < len(tests):
                tests[index] = {"passed": fields[2] == "passed", "kind": fields[2], "message": fields[4],
                                "seconds": float(fields[3])}
        elif tag in ("E", "S") and len(fields) >= 2:
            kind, message = (fields[1], fields[2]) if tag == "S" and len(fields) >= 3 else ("exception", fields[1])
            if kind not in KINDS:
                kind = "exception"
        elif tag == "F" and len(fields) >= 2:
            kind, message = "forbidden", fields[1]
        elif tag == "D":
            done = True
    signal_number = -1
    if status is not None and os.WIFSIGNALED(status):
        signal_number = os.WTERMSIG(status)
    abnormal = None
    if timed_out or signal_number == signal.SIGXCPU:
        abnormal = ("timeout", "wall-time limit" if timed_out else "CPU-time limit")
    elif signal_number == signal.SIGXFSZ:
        abnormal = ("output_limit", f"wrote more than {job['max_output_bytes']} bytes to a file or stdout")
    elif signal_number > 0:  # SIGKILL included: the OOM killer and the program itself look alike
        abnormal = ("killed", f"killed by signal {signal.Signals(signal_number).name}")
    elif not done and kind is None:
        abnormal = ("exit", "the process ended before the tests finished "
                    f"(exit status {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status})")
    if abnormal is not None:
        for test in tests:
            if test["kind"] == "not_run":
                test["kind"], test["message"] = abnormal
                break
        if kind is None:
            kind, message = abnormal
    if kind is None:
        failed = [test for test in tests if not test["passed"]]
        kind, message = (failed[0]["kind"], failed[0]["message"]) if failed else ("passed", "")
    if kind == "passed" and not (done and program_ok):
        kind, message = "exit", "no complete report from the program"
    if any(test["kind"] == "forbidden" for test in tests):
        kind = "forbidden"
        message = next(test["message"] for test in tests if test["kind"] == "forbidden")
    stdout, stdout_bytes = _tail(os.path.join(scratch, "stdout"), TAIL)
    stderr, stderr_bytes = _tail(os.path.join(scratch, "stderr"), TAIL)
    return {
        "passed": kind == "passed", "kind": kind, "message": message[:1000], "tests": tests,
        "stdout": stdout, "stderr": stderr, "stdout_bytes": stdout_bytes, "stderr_bytes": stderr_bytes,
        "seconds": seconds, "exit_status": status,
    }


def _trusted_types():
    """Every class that exists before any program runs (kept alive, so no id is ever reused)."""
    seen, stack = {}, [object]  # id -> class: identity lookups, immune to metaclass __eq__/__hash__
    while stack:
        cls = stack.pop()
        if id(cls) in seen:
            continue
        seen[id(cls)] = cls
        try:
            stack.extend(cls.__subclasses__())
        except TypeError:
            stack.extend(type.__subclasses__(cls))
    return seen


def main():
    inbox, outbox = 0, os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # stray prints must never corrupt the protocol
    base = sys.argv[1]
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})
    network_isolated, prctl = _isolate_network()
    uid = _nobody()
    path_fds = _import_path_fds() if uid is not None else {}
    if path_fds and prctl is None:
        uid, path_fds = None, {}  # could not keep the standard library importable under another uid
    if path_fds:  # import through the open directories from now on (children inherit it)
        def through_fd(path):
            for entry, fd in path_fds.items():
                if path == entry or path.startswith(entry + os.sep):
                    return f"/proc/self/fd/{fd}" + path[len(entry):]
            return path

        sys.path[:] = [through_fd(entry) for entry in sys.path]
        for module in list(sys.modules.values()):  # packages already imported: their submodules too
            search = getattr(module, "__path__", None)
            if isinstance(search, list):
                search[:] = [through_fd(entry) for entry in search]
        sys.path_importer_cache.clear()
    nproc_base = _processes_of(uid[0] if uid else os.getuid())
    trusted = _trusted_types()
    global _STDIO
    _STDIO = (open(0, "r", closefd=False),  # noqa: SIM115 - the children's sys.stdin/stdout/stderr
              open(1, "w", closefd=False, buffering=1, encoding="utf-8", errors="replace"),
              open(2, "w", closefd=False, buffering=1, encoding="utf-8", errors="replace"))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    gc.collect()
    gc.freeze()  # children's collections skip everything loaded so far: no copy-on-write of the heap
    _send(outbox, {"ready": True, "network_namespace": network_isolated, "uid_dropped": uid is not None,
                   "pid": os.getpid()})
    while True:
        job = _receive(inbox)
        _reap()
        if job is None:
            return
        scratch = os.path.join(base, "run-" + os.urandom(8).hex())
        os.mkdir(scratch, 0o700)
        if uid is not None:
            os.chown(scratch, *uid)
        os.chmod(scratch, 0o700)
        compiled = _compile_job(job)
        limits_state = {"compiled": compiled, "watched_builtins": _watched_builtins(compiled[0]), "uid": uid, "nproc": nproc_base + job["processes"], "path_fds": path_fds,
                        "prctl": prctl}
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                _child(job, write_fd, scratch, limits_state, trusted)
            finally:
                os._exit(1)
        os.close(write_fd)
        lines, status, timed_out = _collect(pid, read_fd, started + job["timeout"])
        os.close(read_fd)
        _sweep()
        verdict = _verdict(job, lines, status, timed_out, scratch, time.monotonic() - started)
        _remove_tree(scratch)
        _send(outbox, verdict)


if __name__ == "__main__":
    main()
