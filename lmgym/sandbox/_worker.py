"""The sandbox's worker: a judge that runs the tests, and a zygote that forks the programs.
Runs as its own interpreter (``python -I _worker.py SCRATCH_ROOT``), started by
:class:`lmgym.sandbox.Sandbox`; imports only the standard library.

Three processes take part in one job::

    host (lmgym) --job--> worker = judge: runs the trusted tests, compares, sends the verdict
                            |  zygote: forked from the worker before it ever saw a test;
                            |          keeps one spare candidate forked ahead, hands it to
                            |          the judge for a job, forks the next, reaps them
                            `-- candidate (forked from the zygote): runs the untrusted program
                                 and answers the judge's calls with data

The judge never runs untrusted code, and the candidate never holds an expected value: the
zygote was forked before the first job arrived, so no test text was ever in the memory the
candidates are copied from, and the judge sends a candidate only what the program must
compute with (the arguments of calls, attribute values the tests set, subscripts). Whatever
comes back is decoded as plain data (:func:`decode`), or stays in the candidate as an opaque
reference (:class:`Remote`), so a comparison in a test always runs in the judge, between
values the program cannot redefine.

Host <-> worker: each message is a 4-byte big-endian length and a UTF-8 JSON object; the same
framing carries judge <-> candidate messages over two pipes made for each job.
"""

import builtins
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

# The modules that HumanEval and MBPP solutions import (re, math, collections, typing, heapq,
# itertools, ... by frequency), loaded once here so that candidates start warm. Every module
# kept here makes each fork slower (more memory to map), so rarer ones are left to the child.
PRELOAD = (
    "math", "re", "string", "collections", "itertools", "functools", "heapq", "bisect",
    "typing", "operator", "random", "copy", "cmath", "array", "fractions", "decimal",
    "_posixsubprocess",  # loaded here so that the candidate can disarm it (see _block_fork_exec)
)
KINDS = ("passed", "syntax_error", "assertion", "exception", "timeout", "memory", "killed",
         "output_limit", "forbidden", "exit", "not_run")
TAIL = 2000
MAX_MESSAGE = 64 << 20  # bytes in one message, either direction
MAX_ITEMS = 1_000_000  # elements in one encoded value
MAX_DEPTH = 100  # nesting of one encoded value
MAX_FILES = 32  # files a program may create when no tmpfs bounds its disk (see _install_policy)


# --- framing ---------------------------------------------------------------------------------


def _read_exact(fd, n, deadline=None):
    chunks = []
    while n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _receive(fd, deadline=None):
    """One framed message from ``fd``; None at end of file or for a malformed frame."""
    header = _read_exact(fd, 4, deadline)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE:
        return None
    data = _read_exact(fd, size, deadline)
    if data is None:
        return None
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def _no_constant(name):
    raise ValueError(f"{name} is not data here")  # NaN/Infinity travel tagged (see encode)


# Made once: json.dumps/json.loads with options build a new coder per call (a third of a round trip).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _send(fd, message):
    data = _ENCODER.encode(message).encode("utf-8")
    if len(data) > MAX_MESSAGE:
        raise OverflowError(f"a message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


# --- values as data --------------------------------------------------------------------------
# A value crosses between judge and candidate only as JSON: None, bool, str and int/float as
# themselves; everything else tagged, ``{"L": [...]}`` for a list and so on; an object that is
# not data is ``{"R": n}``, a reference into the candidate's table. Subclasses of the data
# types travel as their base type (a namedtuple as a tuple, a Counter as a dict), read through
# the base type's own methods, so no method of the program's runs on the judge's side.


class Unencodable(TypeError):
    pass


def encode(value, other, budget=None, depth=0):
    """``value`` as JSON-able data; ``other(value)`` encodes what is not data (or raises)."""
    if budget is None:
        budget = [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise Unencodable("the value is too large or too deeply nested to send")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(1 << 62) < value < (1 << 62) else {"I": hex(value)}
    if kind is float:
        return value if value - value == 0.0 else {"f": repr(value)}  # nan, inf, -inf tagged
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        tag = _TAGS[kind]
        return {tag: [encode(item, other, budget, depth + 1) for item in value]}
    if kind is dict:
        return {"D": [[encode(k, other, budget, depth + 1), encode(v, other, budget, depth + 1)]
                      for k, v in value.items()]}
    if kind is bytes:
        return {"B": value.hex()}
    if kind is bytearray:
        return {"A": value.hex()}
    if kind is complex:
        return {"C": [encode(value.real, other, budget), encode(value.imag, other, budget)]}
    if kind is range:
        return {"N": [value.start, value.stop, value.step]}
    if kind is _Decimal:
        return {"E": _Decimal.__str__(value)}
    if kind is _Fraction:
        return {"Q": [encode(value.numerator, other, budget), encode(value.denominator, other, budget)]}
    # subclasses of the data types, read through the base type (never through their own methods)
    if isinstance(value, int) and kind is not bool:
        return encode(int.__int__(value), other, budget, depth)
    if isinstance(value, float):
        return encode(float.__float__(value), other, budget, depth)
    if isinstance(value, str):
        return str.__str__(value)
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return {_TAGS[base]: [encode(item, other, budget, depth + 1) for item in base.__iter__(value)]}
    if isinstance(value, dict):
        return {"D": [[encode(k, other, budget, depth + 1), encode(v, other, budget, depth + 1)]
                      for k, v in dict.items(value)]}
    if kind is type and _BUILTIN_TYPES.get(type.__getattribute__(value, "__name__")) is value:
        return {"Y": type.__getattribute__(value, "__name__")}  # int, str, ... (MBPP 533 passes one)
    return other(value)


_TAGS = {list: "L", tuple: "T", set: "S", frozenset: "Z"}
_BUILTIN_TYPES = {name: value for name, value in vars(builtins).items() if isinstance(value, type)}
_Decimal = _Fraction = None  # bound in main() once decimal and fractions are loaded


def decode(data, reference, depth=0):
    """The plain value of ``data`` (see :func:`encode`); ``reference(n)`` makes ``{"R": n}``."""
    kind = type(data)
    if data is None or kind is bool or kind is str or kind is int or kind is float:
        return data
    if depth > MAX_DEPTH or kind is not dict or len(data) != 1:
        raise Unencodable("malformed value")
    ((tag, payload),) = data.items()
    if tag in ("L", "T", "S", "Z"):
        if type(payload) is not list:
            raise Unencodable("malformed value")
        items = [decode(item, reference, depth + 1) for item in payload]
        return items if tag == "L" else tuple(items) if tag == "T" else set(items) if tag == "S" else frozenset(items)
    if tag == "D" and type(payload) is list:
        result = {}
        for pair in payload:
            if type(pair) is not list or len(pair) != 2:
                raise Unencodable("malformed value")
            result[decode(pair[0], reference, depth + 1)] = decode(pair[1], reference, depth + 1)
        return result
    if tag == "I" and type(payload) is str:
        return int(payload, 16)
    if tag == "f" and payload in ("nan", "inf", "-inf"):
        return float(payload)
    if tag == "B" and type(payload) is str:
        return bytes.fromhex(payload)
    if tag == "A" and type(payload) is str:
        return bytearray.fromhex(payload)
    if tag == "C" and type(payload) is list and len(payload) == 2:
        real, imag = (decode(part, reference, depth + 1) for part in payload)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "N" and type(payload) is list and len(payload) == 3 and all(type(x) is int for x in payload):
        return range(*payload)
    if tag == "E" and type(payload) is str:
        return _Decimal(payload)
    if tag == "Q" and type(payload) is list and len(payload) == 2:
        numerator, denominator = (decode(part, reference, depth + 1) for part in payload)
        if type(numerator) is int and type(denominator) is int and denominator > 0:
            return _Fraction(numerator, denominator)
    if tag == "Y" and type(payload) is str and payload in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[payload]
    if tag == "R" and type(payload) is int:
        return reference(payload)
    raise Unencodable("malformed value")


# --- isolation available to this machine ---------------------------------------------------

# Landlock (Linux >= 5.13): an unprivileged allow-list of file accesses, inherited by every
# process the candidate could start and impossible to lift from inside.
_LL_FS = {  # access right -> (bit, first ABI that has it)
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1), "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1), "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1), "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3), "ioctl_dev": (1 << 15, 5),
}
_SYS_LANDLOCK_CREATE, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT = 444, 445, 446  # the same on every arch


def _rights(abi, *names):
    return sum(bit for name, (bit, first) in _LL_FS.items() if name in names and first <= abi)


def read_roots():
    """What a candidate may read: the standard library without any site-packages (listed entry
    by entry, since an installed package directory can sit inside it), and the system's
    shared-library directory (the libraries of extension modules such as _ssl or _lzma).
    Returns (roots, listable, site): the paths that may be read, the directories that may
    only be listed (the standard library's own, for the import system), and the site
    directories left out."""
    import sysconfig

    paths = sysconfig.get_paths()
    site = {os.path.realpath(paths[key]) for key in ("purelib", "platlib")}
    site.update(os.path.realpath(entry) for entry in sys.path if entry.endswith(("site-packages", "dist-packages")))
    roots, listable = [], []
    for key in ("stdlib", "platstdlib"):
        stdlib = os.path.realpath(paths[key])
        if not os.path.isdir(stdlib) or stdlib in listable:
            continue
        listable.append(stdlib)
        for entry in os.scandir(stdlib):
            path = os.path.realpath(entry.path)
            if entry.name.endswith("-packages") or path in site:
                site.add(path)
            elif path not in roots:
                roots.append(path)
    multiarch = sysconfig.get_config_var("MULTIARCH")
    for lib in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        candidate = os.path.realpath(os.path.join(lib, multiarch) if multiarch else lib)
        if os.path.isdir(candidate) and candidate not in roots:
            roots.append(candidate)
    return roots, listable, sorted(site)


def _landlock_ruleset(syscall, scratch, roots, listable):
    """(ruleset fd, abi) for: read ``roots``; read, write, create and remove inside
    ``scratch``; /dev/null read and write; nothing else; no TCP (ABI 4) and no signals or
    abstract sockets beyond the candidate's own domain (ABI 6). (None, 0) where unsupported."""
    import ctypes

    abi = syscall(_SYS_LANDLOCK_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return None, 0
    handled = _rights(abi, *_LL_FS)
    fields = [handled]
    if abi >= 4:
        fields.append(0b11)  # LANDLOCK_ACCESS_NET_BIND_TCP | CONNECT_TCP, with no rule allowing any
    if abi >= 6:
        fields.append(0b11)  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL
    attr = struct.pack(f"={len(fields)}Q", *fields)
    ruleset = syscall(_SYS_LANDLOCK_CREATE, ctypes.c_char_p(attr), len(attr), 0)
    if ruleset < 0:
        return None, 0
    read = _rights(abi, "read_file", "read_dir")
    files = _rights(abi, "read_file", "write_file", "truncate")
    rules = [(path, read) for path in roots] + [(path, _rights(abi, "read_dir")) for path in listable] + [
        (scratch, _rights(abi, "read_file", "read_dir", "write_file", "truncate", "make_reg", "make_dir",
                          "make_sym", "remove_file", "remove_dir", "refer")),
        ("/dev/null", files),
    ]
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):
            access &= _rights(abi, "execute", "read_file", "write_file", "truncate", "ioctl_dev")
        rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr (packed)
        result = syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.c_char_p(rule), 0)
        os.close(fd)
        if result != 0:
            os.close(ruleset)
            return None, 0
    return ruleset, abi


def _native():
    """libc's entry points the worker needs (prctl, syscall, unshare, mount), or None.
    ctypes is removed from ``sys.modules`` afterwards (the candidate's policy forbids loading
    or calling it; the functions kept here are called before that policy is installed)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return {"prctl": libc.prctl, "syscall": libc.syscall, "unshare": libc.unshare, "mount": libc.mount,
                "errno": ctypes.get_errno}
    except Exception:
        return None


def _forget_ctypes():
    for name in [name for name in sys.modules if name == "ctypes" or name.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]


def _private_tmpfs(native, path, megabytes):
    """Mount a tmpfs of ``megabytes`` on ``path`` in a mount namespace of this worker's own
    (root only): the candidate's whole disk budget, enforced by the kernel (ENOSPC)."""
    if native is None or os.geteuid() != 0:
        return False
    if native["unshare"](0x00020000) != 0:  # CLONE_NEWNS
        return False
    if native["mount"](b"none", b"/", None, 0x40000 | 0x4000, None) != 0:  # MS_PRIVATE | MS_REC: nothing leaks out
        return False
    return _mount_scratch(native, path, megabytes, remount=False)


def _mount_scratch(native, path, megabytes, remount):
    options = f"size={megabytes}m,nr_inodes={4 * MAX_FILES},mode=0700".encode()
    flags = 0x20 if remount else 0  # MS_REMOUNT
    return native["mount"](b"tmpfs", path.encode(), b"tmpfs", flags | 0x2 | 0x8, options) == 0  # MS_NOSUID | MS_NOEXEC


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


def _import_path_fds(entries):
    """For import directories a dropped uid could not reach (a Python installed under /root,
    say), open the directory now and let the candidate import through /proc/self/fd/N."""
    mapping = {}
    for entry in entries:
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


# --- the candidate: runs untrusted code ------------------------------------------------------


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
_LIST_EVENTS = ("os.listdir", "os.scandir", "glob.glob")


def _install_policy(scratch, readable, listable, violations, count_files):
    """An audit hook: no processes, sockets, foreign calls through ctypes (importing it is
    fine) or heap walking (threads are allowed, counted against RLIMIT_NPROC); reads only
    below ``readable`` (the standard library) and ``scratch``; writes only inside ``scratch``
    (at most MAX_FILES files opened for writing when ``count_files``: the disk budget where no
    tmpfs enforces one); no /proc except its own; signals only to itself.

    Installed once in the zygote, where it lets everything pass, and armed in each candidate
    (the returned ``arm()``) just before the program runs: a hook costs ~60 page faults and
    0.3 ms to set up, which every candidate would otherwise pay again.

    A policy layer inside the untrusted interpreter, not the boundary: it names the attempt
    (an attempt scores 0 even if the program catches the exception), while Landlock, the
    dropped uid, the namespaces and the rlimits contain what gets past it.
    """
    realpath, fspath, getpid, startswith = os.path.realpath, os.fspath, os.getpid, str.startswith
    armed = []  # empty in the zygote (the hook lets everything pass); [pid, own /proc prefixes] in a candidate
    prefix = scratch + os.sep
    append = violations.append
    devices = ("/dev/null", "/dev/urandom", "/dev/zero")
    readable_exact, readable = frozenset(readable), tuple(path + os.sep for path in readable)
    written = [0]

    def resolve(path):
        try:
            return realpath(fspath(path))
        except Exception:
            return None

    def inside(path):
        if isinstance(path, int):
            return True
        path = resolve(path)
        return path is not None and (path == scratch or startswith(path, prefix) or path == "/dev/null")

    def may_read(path):
        if isinstance(path, int):
            return True
        path = resolve(path)
        if path is None:
            return False
        return (path == scratch or startswith(path, prefix) or path in devices or path in readable_exact
                or startswith(path, readable) or startswith(path + os.sep, armed[1]))

    def deny(event, detail):
        append(f"{event}: {detail}")
        raise _Violation(f"lmgym sandbox: {event} is not allowed ({detail})")

    def hook(event, args):
        if not armed:
            return
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
            if writing:
                if not inside(path):
                    deny(event, f"writing {path!r} outside the scratch directory")
                if count_files:
                    written[0] += 1
                    if written[0] > MAX_FILES:
                        deny(event, f"opening more than {MAX_FILES} files for writing (the disk budget)")
            elif not may_read(path):
                deny(event, f"reading {path!r} (outside the standard library and the scratch directory)")
        elif event in _LIST_EVENTS:
            if args and args[0] is not None and not may_read(args[0]) and resolve(args[0]) not in listable:
                deny(event, f"listing {args[0]!r}")
        elif event in _PATH_EVENTS:
            for position in _PATH_EVENTS[event]:
                if position < len(args) and not inside(args[position]):
                    deny(event, f"{args[position]!r} is outside the scratch directory")
        elif event == "os.kill" or event == "os.killpg":
            if args[0] not in (0, armed[0]):
                deny(event, f"signal to process {args[0]}")
        elif event == "import" and args[0] in ("_xxsubinterpreters", "_xxinterpchannels"):
            deny(event, f"module {args[0]}")

    def arm():
        pid = getpid()
        armed[:] = [pid, (f"/proc/{pid}/", "/proc/self/", "/proc/thread-self/")]

    sys.addaudithook(hook)
    return arm


def _block_fork_exec(violations):
    """``_posixsubprocess.fork_exec`` starts processes without an audit event: replace it."""
    module = sys.modules.get("_posixsubprocess")
    if module is None:
        return

    def fork_exec(*args, **kwargs):
        violations.append("_posixsubprocess.fork_exec: forbidden operation")
        raise _Violation("lmgym sandbox: starting processes is not allowed")

    module.fork_exec = fork_exec


def _classify(error):
    if isinstance(error, _Violation):
        return "forbidden"
    if isinstance(error, AssertionError):
        return "assertion"
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError) and error.errno in (27, 28, 122):  # EFBIG, ENOSPC, EDQUOT
        return "output_limit"
    if isinstance(error, SystemExit):
        return "exit"
    if isinstance(error, SyntaxError):
        return "syntax_error"
    return "exception"


def _describe(error):
    try:
        text = str(error)
    except BaseException:
        text = "<unprintable>"
    return f"{type(error).__name__}: {text}"[:1000]


def _candidate(request_fd, reply_fd, state):
    """Runs in the forked candidate. Never returns: ends with os._exit."""
    exit_ = os._exit
    try:
        # As a spare, ahead of its job: nothing here depends on the job, and the process still
        # runs as the zygote's user, so a program running meanwhile cannot reach it.
        ruleset = state["ruleset"]
        keep = sorted({request_fd, reply_fd, *state["path_fds"].values(), *([ruleset] if ruleset is not None else [])})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 65536)
        job = _receive(request_fd)  # the program and its limits (the tests never come here)
        if job is None:
            exit_(0)
        scratch = state["scratch"]
        os.setsid()
        # Only now: the previous job's verdict has read its stdout and stderr, and emptied the scratch dir.
        for fd, path, flags in ((0, "/dev/null", os.O_RDONLY),
                                (1, os.path.join(scratch, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, os.path.join(scratch, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            new = os.open(path, flags, 0o600)
            os.dup2(new, fd)
            os.close(new)
        native, uid = state["native"], state["uid"]
        if uid is not None:
            os.chown(os.path.join(scratch, "stdout"), *uid)
            os.chown(os.path.join(scratch, "stderr"), *uid)
            os.setgroups([])
            os.setgid(uid[1])
            os.setuid(uid[0])
            if state["path_fds"]:
                native["prctl"](4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/fd readable again
        if native is not None:
            if ruleset is not None:  # PR_SET_NO_NEW_PRIVS, Landlock's precondition, is set in the zygote
                if native["syscall"](_SYS_LANDLOCK_RESTRICT, ruleset, 0) != 0:
                    raise OSError("landlock_restrict_self failed")
                os.close(ruleset)
        if "random" in sys.modules:
            sys.modules["random"].seed(0)  # the same program gets the same verdict
        memory = job["memory_mb"] << 20
        cpu = max(1, int(job["cpu_time"] + 0.999))
        for name, value in (("RLIMIT_AS", memory), ("RLIMIT_DATA", memory), ("RLIMIT_CPU", cpu),
                            ("RLIMIT_FSIZE", job["max_output_bytes"]), ("RLIMIT_NOFILE", job["open_files"]),
                            ("RLIMIT_NPROC", state["nproc"] + job["processes"]), ("RLIMIT_CORE", 0)):
            # CPU: SIGXCPU at the soft limit (reported as a timeout), SIGKILL a second later.
            resource.setrlimit(getattr(resource, name), (value, value + 1 if name == "RLIMIT_CPU" else value))
        violations = _VIOLATIONS  # empty: the zygote's hook never records anything
        state["arm"]()
    except BaseException as error:  # the sandbox could not be set up: never run the program
        try:
            _send(reply_fd, {"kind": "exception", "message": f"sandbox setup failed: {_describe(error)}",
                             "seconds": 0.0, "setup_failed": True})
        finally:
            exit_(0)

    # From here on the program runs, and may change anything in this process: nothing below
    # is trusted by the judge beyond "the program's answer".
    refs = []

    def reference(value):
        refs.append(value)
        return {"R": len(refs) - 1}

    def lookup(number):
        if not 0 <= number < len(refs):
            raise Unencodable("no such reference")
        return refs[number]

    def answer(value):
        try:
            return encode(value, reference)
        except Unencodable:
            return reference(value)

    def flush():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass

    start = time.perf_counter()
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(job["program"], "<candidate>", "exec"), namespace)
        kind, message = "passed", ""
    except BaseException as error:
        kind, message = _classify(error), _describe(error)
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    if violations:
        kind, message = "forbidden", "attempted " + violations[0]
    reply = {"kind": kind, "message": message, "seconds": time.perf_counter() - start}
    if kind == "passed":
        names = {}
        for name in job["names"]:
            if name in namespace:
                try:
                    names[name] = answer(namespace[name])
                except BaseException:
                    pass
        reply["names"] = names
    flush()
    _send(reply_fd, reply)
    if kind != "passed":
        exit_(0)

    while True:
        request = _receive(request_fd)
        if request is None or request.get("op") == "finish":
            flush()
            _send(reply_fd, {"violation": violations[0] if violations else None})
            exit_(0)
        reply = {}
        try:
            reply["value"] = _serve(request, lookup, answer)
        except BaseException as error:
            if isinstance(error, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                flush()
                exit_(0)  # the program ended itself inside a call: the judge sees the run end
            reply = {"raised": type(error).__name__, "message": _describe(error)[:1000],
                     "errno": getattr(error, "errno", None) if isinstance(error, OSError) else None}
        finally:
            sys.settrace(None)
            sys.setprofile(None)
        if violations:
            reply["violation"] = violations[0]
        try:
            _send(reply_fd, reply)
        except OverflowError as error:
            _send(reply_fd, {"raised": "MemoryError", "message": str(error), "errno": None})


def _serve(request, lookup, answer):
    """One of the judge's requests on the program's objects; the result as data."""
    target = lookup(request["ref"])
    op = request["op"]
    if op == "call":
        args = [decode(arg, lookup) for arg in request["args"]]
        kwargs = {key: decode(value, lookup) for key, value in request["kwargs"].items()}
        result = target(*args, **kwargs)
        encoded = answer(result)
        after = {}
        for index, (arg, sent) in enumerate(zip(args, request["args"])):
            if type(arg) in (list, dict, set, bytearray):  # an argument the call may have changed in place
                now = answer(arg)
                if now != sent:
                    after[str(index)] = now
        return {"result": encoded, "after": after} if after else {"result": encoded}
    if op == "getattr":
        return {"result": answer(getattr(target, request["name"]))}
    if op == "setattr":
        setattr(target, request["name"], decode(request["value"], lookup))
        return {"result": None}
    if op == "method":
        name, args = request["name"], [decode(arg, lookup) for arg in request.get("args", [])]
        if name == "bool":
            return {"result": bool(target)}
        if name == "len":
            return {"result": int.__int__(len(target))}
        if name == "list":
            items = []
            for item in target:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise MemoryError("an iterable of more than a million items")
            return {"result": answer(items)}
        if name == "next":
            return {"result": answer(next(target))}
        if name == "getitem":
            return {"result": answer(target[args[0]])}
        if name in ("str", "repr"):
            text = str(target) if name == "str" else repr(target)
            return {"result": str.__str__(text)[:100_000]}
        if name == "eq":
            return {"result": bool(target == args[0])}
    raise Unencodable(f"unknown request {op!r}")


# --- the judge: runs the trusted tests -------------------------------------------------------


class _RunEnded(Exception):
    """The candidate stopped answering: it exited, crashed, hit a limit, or the deadline passed."""


class _Deadline(BaseException):
    """SIGALRM at the job's wall-time limit, raised inside trusted test code."""


class CandidateError(Exception):
    """An exception the program raised that is not one of Python's built-in exceptions."""


def _on_alarm(signum, frame):
    raise _Deadline


def _stop_alarm():
    while True:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        except _Deadline:  # it fired as it was being stopped: the run ended at its limit anyway
            continue


class _Channel:
    """The judge's end of one candidate: framed requests out, framed replies in, one deadline."""

    def __init__(self, request_fd, reply_fd, deadline):
        self.request_fd, self.reply_fd, self.deadline = request_fd, reply_fd, deadline
        self.violation = None
        self.ended = False

    def ask(self, message):
        if self.ended:
            raise _RunEnded
        try:
            _send(self.request_fd, message)
            reply = _receive(self.reply_fd, self.deadline)
        except TimeoutError:  # the wall-time limit passed while waiting (the alarm may not have fired yet)
            self.ended = True
            raise _Deadline from None
        except OSError:
            reply = None
        if reply is None or type(reply) is not dict:
            self.ended = True
            raise _RunEnded
        if reply.get("violation") and self.violation is None:
            self.violation = str(reply["violation"])[:1000]
        return reply

    def value(self, reply):
        """The result of a request, decoded; the program's exception re-raised here."""
        if "raised" in reply:
            raise _rebuilt(reply)
        data = reply.get("value")
        if type(data) is not dict or "result" not in data:
            raise CandidateError("malformed reply from the program")
        try:
            return decode(data["result"], self.remote), data.get("after") or {}
        except (Unencodable, TypeError, ValueError, RecursionError) as error:
            raise CandidateError(f"malformed reply from the program: {error}") from None

    def remote(self, number):
        return Remote(self, number)

    def request(self, op, ref, **fields):
        value, _ = self.value(self.ask({"op": op, "ref": ref, **fields}))
        return value


def _rebuilt(reply):
    """The program's exception as an exception of the judge: the same built-in type when it is
    one (so that ``except ValueError`` in a test works), else :class:`CandidateError`."""
    name, message = str(reply.get("raised")), str(reply.get("message", ""))[:1000]
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
        if issubclass(kind, OSError) and isinstance(reply.get("errno"), int):
            return kind(reply["errno"], message)
        try:
            return kind(message)
        except Exception:
            pass
    return CandidateError(message)


def _sendable(value):
    """What the judge may pass to the program: data, or the program's own objects."""
    if type(value) is Remote:
        return {"R": object.__getattribute__(value, "_ref")}
    raise Unencodable(f"a {type(value).__name__} cannot be passed to the program (data and its own objects only)")


class Remote:
    """One of the program's objects that is not data (a function, an instance of its class, a
    generator), held by the judge as a reference. Calling it, reading or setting an attribute,
    ``len``, ``bool``, iteration, ``next``, subscripts, ``str``/``repr`` and ``==`` with another
    of the program's objects are asked of the program; ``==`` with anything else is False
    (identity), and ``x in obj`` is decided here, on the items the program lists."""

    __slots__ = ("_channel", "_ref")

    def __init__(self, channel, ref):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", ref)

    def _ask(self, op, **fields):
        channel = object.__getattribute__(self, "_channel")
        return channel.request(op, object.__getattribute__(self, "_ref"), **fields)

    def __call__(self, *args, **kwargs):
        channel = object.__getattribute__(self, "_channel")
        sent = [encode(arg, _sendable) for arg in args]
        reply = channel.ask({"op": "call", "ref": object.__getattribute__(self, "_ref"), "args": sent,
                             "kwargs": {str(key): encode(value, _sendable) for key, value in kwargs.items()}})
        result, after = channel.value(reply)
        for index, data in after.items():  # arguments the program changed in place
            if isinstance(index, str) and index.isdigit() and int(index) < len(args):
                _update(args[int(index)], decode(data, channel.remote))
        return result

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name=name)

    def __setattr__(self, name, value):
        self._ask("setattr", name=name, value=encode(value, _sendable))

    def __bool__(self):
        return self._ask("method", name="bool") is True

    def __len__(self):
        length = self._ask("method", name="len")
        if type(length) is not int or length < 0:
            raise TypeError("the program's len() is not a non-negative int")
        return length

    def __iter__(self):
        items = self._ask("method", name="list")
        if type(items) is not list:
            raise TypeError("the program did not list its items")
        return iter(items)

    def __next__(self):
        return self._ask("method", name="next")

    def __getitem__(self, key):
        return self._ask("method", name="getitem", args=[encode(key, _sendable)])

    def __contains__(self, item):
        return any(item is member or item == member for member in self.__iter__())

    def __str__(self):
        return str(self._ask("method", name="str"))

    def __repr__(self):
        return str(self._ask("method", name="repr"))

    def __eq__(self, other):
        if type(other) is not Remote:
            return NotImplemented
        return self._ask("method", name="eq", args=[encode(other, _sendable)]) is True

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self):
        return object.__hash__(self)


def _update(original, new):
    """Apply the program's in-place change of an argument to the judge's own object."""
    if type(original) is list and type(new) is list:
        original[:] = new
    elif type(original) in (dict, set) and type(new) is type(original):
        original.clear()
        original.update(new)
    elif type(original) is bytearray and type(new) is bytearray:
        original[:] = new


_COMPILED = {}  # trusted source -> code: tests repeat across samples


def _compile(source, label):
    code = _COMPILED.get((source, label))
    if code is None:
        code = compile(source, f"<{label}>", "exec")
        if len(_COMPILED) > 50_000:
            _COMPILED.clear()
        _COMPILED[(source, label)] = code
    return code


def _names(code, found):
    found.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, type(code)):
            _names(const, found)
    return found


_BUILTIN_NAMES = frozenset(dir(builtins))


def _judge(job, channel):
    """Run the job's tests against the candidate ``pid``; the verdict's fields."""
    tests = [{"passed": False, "kind": "not_run", "message": "", "seconds": 0.0} for _ in job["tests"]]
    try:
        setup = _compile(job["setup"], "setup") if job["setup"] else None
        compiled = [_compile(test, f"test {i}") for i, test in enumerate(job["tests"])]
    except SyntaxError as error:
        return "exception", f"test code does not compile: {_describe(error)}", tests
    names = set()
    for code in ([setup] if setup else []) + compiled:
        _names(code, names)
    # A builtin's name comes from the program only when the job names it (MBPP 126 asks for a
    # function called sum): otherwise a program could rebind the abs() that a test applies to a
    # value holding the expected answer, see that answer, and choose the result.
    wanted = (names - _BUILTIN_NAMES) | (names & set(job.get("entry_points", ())))
    first = channel.ask({"program": job["program"], "names": sorted(wanted),
                         **{key: job[key] for key in ("timeout", "cpu_time", "memory_mb", "max_output_bytes",
                                                      "open_files", "processes")}})
    kind, message = str(first.get("kind")), str(first.get("message", ""))[:1000]
    if kind not in KINDS:
        kind = "exception"
    if kind != "passed":
        return kind, message, tests
    namespace = {"__name__": "__judge__", "__builtins__": builtins}
    for name, data in (first.get("names") or {}).items():
        try:
            namespace[str(name)] = decode(data, channel.remote)
        except (Unencodable, TypeError, ValueError, RecursionError):
            pass
    if setup is not None:
        outcome, detail = _run_trusted(setup, namespace)
        if outcome != "passed":
            return outcome, f"setup: {detail}", tests
    for index, code in enumerate(compiled):
        began = time.perf_counter()
        outcome, detail = _run_trusted(code, namespace)
        tests[index] = {"passed": outcome == "passed", "kind": outcome, "message": detail,
                        "seconds": time.perf_counter() - began}
        if outcome in ("ended", "timeout"):
            channel.ended = True  # a candidate that stopped answering is not asked again
            break
    if not channel.ended:
        try:
            channel.ask({"op": "finish"})  # its answer says whether the policy layer saw an attempt
        except _RunEnded:
            pass
        except _Deadline:  # every test ran, but the run did not end within its limit
            return "timeout", "wall-time limit", tests
    return None, "", tests


def _run_trusted(code, namespace):
    """Execute a test (or the setup) in the judge; ``(kind, message)``, kind ``"ended"`` when
    the candidate stopped answering (its real kind comes from its exit status)."""
    try:
        exec(code, namespace)
        return "passed", ""
    except _Deadline:
        return "timeout", "wall-time limit"
    except _RunEnded:
        return "ended", ""
    except BaseException as error:
        return _classify(error) if not isinstance(error, SystemExit) else "exception", _describe(error)


def _status_kind(status, timed_out, max_output_bytes):
    """The failure kind and message for a candidate that stopped answering."""
    if timed_out:
        return "timeout", "wall-time limit"
    if status is None:
        return "killed", "the candidate could not be reaped"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU:
            return "timeout", "CPU-time limit"
        if number == signal.SIGXFSZ:
            return "output_limit", f"wrote more than {max_output_bytes} bytes to a file or stdout"
        return "killed", f"killed by signal {signal.Signals(number).name}"  # the OOM killer and the program look alike
    return "exit", ("the process ended before the tests finished "
                    f"(exit status {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status})")


def _verdict(job, zygote, scratch):
    started = time.monotonic()
    deadline = started + job["timeout"]
    pid, request_w, reply_r = zygote.take()
    channel = _Channel(request_w, reply_r, deadline)
    # The alarm is one-shot, and it may fire anywhere, also while it is being stopped (a run
    # that ends right at its limit): the outer handler catches it wherever it lands, so that
    # it never escapes the verdict and ends the worker.
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, max(job["timeout"], 1e-3))
            kind, message, tests = _judge(job, channel)
        except _RunEnded:
            kind, message, tests = "ended", "", None
        finally:
            _stop_alarm()
    except _Deadline:
        kind, message, tests = "timeout", "wall-time limit", None
    if tests is None:
        tests = [{"passed": False, "kind": "not_run", "message": "", "seconds": 0.0} for _ in job["tests"]]
    ended = channel.ended or kind == "ended" or any(test["kind"] in ("ended", "timeout") for test in tests)
    if ended:  # the candidate stopped answering: its exit status says why
        status, killed = zygote.reap(pid, grace=max(0.0, deadline - time.monotonic()))
        timed_out = killed or kind == "timeout" or any(test["kind"] == "timeout" for test in tests)
        abnormal = _status_kind(status, timed_out, job["max_output_bytes"])
        for test in tests:
            if test["kind"] in ("ended", "timeout"):
                test["kind"], test["message"] = abnormal
        if kind in (None, "ended", "timeout"):
            kind, message = abnormal
    try:
        os.killpg(pid, signal.SIGKILL)  # nothing the program started may outlive the verdict
    except (ProcessLookupError, PermissionError):
        pass
    os.close(request_w)
    os.close(reply_r)
    if kind is None:
        failed = [test for test in tests if not test["passed"]]
        kind, message = (failed[0]["kind"], failed[0]["message"]) if failed else ("passed", "")
    if channel.violation:  # an attempt voids the run, whatever the tests said
        kind, message = "forbidden", "attempted " + channel.violation
        for test in tests:
            test["passed"] = False
    stdout, stdout_bytes = _tail(os.path.join(scratch, "stdout"), TAIL)
    stderr, stderr_bytes = _tail(os.path.join(scratch, "stderr"), TAIL)
    return {
        "passed": kind == "passed", "kind": kind, "message": message[:1000], "tests": tests,
        "stdout": stdout, "stderr": stderr, "stdout_bytes": stdout_bytes, "stderr_bytes": stderr_bytes,
        "seconds": time.monotonic() - started,
    }


def _tail(path, size):
    try:  # os-level, as in _sweep: two file objects per job were a tenth of the judge's time
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return "", 0
    try:
        length = os.fstat(fd).st_size
        return os.pread(fd, size, max(0, length - size)).decode("utf-8", "replace"), length
    except OSError:
        return "", 0
    finally:
        os.close(fd)


def _empty(path):
    """Remove everything inside ``path`` (not following symlinks), keeping ``path`` itself."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _empty(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


# --- the zygote: forks candidates from a memory that never held a test ------------------------


class _Zygote:
    """The worker's handle on its zygote: ``take`` a spare candidate, ``reap`` one."""

    def __init__(self, state):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            parent.close()
            try:
                _zygote_loop(child, state)
            finally:
                os._exit(0)
        child.close()
        self.socket = parent

    def take(self):
        """``(pid, request_fd, reply_fd)``: a candidate forked ahead, and the judge's ends of its pipes."""
        self.socket.send(b"F")
        message, fds, _, _ = socket.recv_fds(self.socket, 64, 2)
        if len(fds) != 2:
            raise OSError("the zygote did not hand out a candidate")
        return int(message), fds[0], fds[1]

    def reap(self, pid, grace):
        """``(status, killed)`` of candidate ``pid``: its exit status (None if unknown), and
        whether it was still running after ``grace`` seconds and had to be killed."""
        self.socket.send(b"R%d %d" % (pid, int(grace * 1000)))
        answer = self.socket.recv(64)
        if answer == b"-":
            return None, False
        return int(answer.lstrip(b"K")), answer.startswith(b"K")


def _spawn(sock, state):
    """Fork a spare candidate on two new pipes; ``(pid, request_w, reply_r)``, the judge's ends."""
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            os.close(request_w)
            os.close(reply_r)
            _candidate(request_r, reply_w, state)
        finally:
            os._exit(1)
    os.close(request_r)
    os.close(reply_w)
    return pid, request_w, reply_r


def _zygote_loop(sock, state):
    native = state["native"]
    if native is not None:
        native["prctl"](36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: a candidate's orphans come back here
        native["prctl"](38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS (Landlock's precondition; the zygote never execs)
    # What every candidate needs and no job changes is set up here, once, and inherited: the
    # scratch directory as cwd, HOME and TMPDIR, the import path without site-packages, the
    # standard streams, the recursion limit, and the policy layer (disarmed until a candidate
    # arms it). Each of these costs page faults when a candidate does it after the fork.
    scratch = state["scratch"]
    os.chdir(scratch)
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch  # the rest was scrubbed by the worker
    sys.path[:] = state["sys_path"]
    sys.path_importer_cache.clear()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    sys.stdin, sys.stdout, sys.stderr = state["stdio"]  # on fds 0-2, which each candidate redirects
    state["arm"] = _install_policy(scratch, state["readable"], state["listable"], _VIOLATIONS,
                                   count_files=not state["tmpfs"])
    _block_fork_exec(_VIOLATIONS)
    # One candidate is always forked ahead and waits for its job: the fork, and the candidate's
    # job-independent setup, run while the judge works on the previous job, not before the next.
    spare = _spawn(sock, state)
    while True:
        try:
            message = sock.recv(64)
        except OSError:
            return
        if not message:
            return
        if message == b"F":
            pid, request_w, reply_r = spare
            socket.send_fds(sock, [b"%d" % pid], [request_w, reply_r])
            os.close(request_w)
            os.close(reply_r)
            _sweep(keep=pid)  # the previous candidate and anything it left behind
            spare = _spawn(sock, state)
            _reap()
        elif message.startswith(b"R"):
            pid, grace = (int(field) for field in message[1:].split())
            until, killed = time.monotonic() + grace / 1000, False
            try:
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    if time.monotonic() >= until:  # still running: the deadline ends it
                        os.kill(pid, signal.SIGKILL)
                        _, status = os.waitpid(pid, 0)
                        killed = True
                        break
                    time.sleep(0.001)
                sock.send(b"%s%d" % (b"K" if killed else b"", status))
            except ChildProcessError:
                sock.send(b"-")
            _sweep(keep=spare[0])


_ZOMBIES = set()
_CHILDREN = "/proc/thread-self/children"  # the zygote is single-threaded: its own children
_VIOLATIONS = []  # the policy layer's record in a candidate (always empty in the zygote)


def _sweep(keep):
    """Kill every child of the zygote but ``keep`` (finished candidates, and any orphan one
    left behind, reparented here by PR_SET_CHILD_SUBREAPER); they are reaped by _reap."""
    try:  # os-level: a file object would cost the zygote a dozen copied pages per job
        fd = os.open(_CHILDREN, os.O_RDONLY)
        try:
            pids = [int(pid) for pid in os.read(fd, 1 << 16).split()]
        finally:
            os.close(fd)
    except OSError:
        return
    for pid in pids:
        if pid == keep:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        _ZOMBIES.add(pid)


def _reap():
    for pid in list(_ZOMBIES):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _ZOMBIES.discard(pid)


# --- the worker loop -----------------------------------------------------------------------


def main():
    global _Decimal, _Fraction
    inbox, outbox = 0, os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # stray prints must never corrupt the protocol
    base = sys.argv[1]
    disk_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    cpu = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    if cpu >= 0:
        # The judge and its candidate take turns (one waits while the other runs): on one core,
        # each hand-over is a wake-up on the core that is already warm, not an interrupt to
        # another one, and a round trip costs a third as much (see Sandbox's pin_cpus).
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            cpu = -1
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    _Decimal, _Fraction = sys.modules["decimal"].Decimal, sys.modules["fractions"].Fraction
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})
    native = _native()
    network_isolated = native is not None and native["unshare"](0x40000000) == 0  # CLONE_NEWNET
    scratch = os.path.join(base, "w-" + os.urandom(6).hex())  # this worker's, reused by every job
    os.mkdir(scratch, 0o700)
    tmpfs = _private_tmpfs(native, scratch, disk_mb)
    uid = _nobody()
    if uid is not None:
        os.chown(scratch, *uid)
    os.chmod(scratch, 0o700)
    roots, listable, site = read_roots()
    path_fds = _import_path_fds([entry for entry in sys.path if entry not in site]) if uid is not None else {}
    if path_fds and native is None:
        uid, path_fds = None, {}  # could not keep the standard library importable under another uid
    if path_fds:  # import through the open directories from now on (candidates inherit it)
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
        roots = roots + [f"/proc/self/fd/{fd}" for fd in path_fds.values()]  # the policy layer resolves these
    ruleset, abi = _landlock_ruleset(native["syscall"], scratch, [r for r in roots if not r.startswith("/proc")],
                                     listable) if native is not None else (None, 0)
    _forget_ctypes()
    state = {
        "scratch": scratch, "uid": uid, "path_fds": path_fds, "native": native, "ruleset": ruleset,
        "tmpfs": tmpfs, "readable": [os.path.realpath(r) for r in roots],
        "listable": frozenset(listable),
        "sys_path": [entry for entry in sys.path if os.path.realpath(entry) not in set(site)],  # the candidates
        "nproc": _processes_of(uid[0] if uid else os.getuid()),
        "stdio": (open(0, "r", closefd=False),  # noqa: SIM115 - the candidates' sys.stdin/stdout/stderr
                  open(1, "w", closefd=False, buffering=1, encoding="utf-8", errors="replace"),
                  open(2, "w", closefd=False, buffering=1, encoding="utf-8", errors="replace")),
    }
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # The AST node types are built on the first compile in a process (~120 types, 2 ms): build
    # them here, so that candidates inherit them instead of rebuilding them for every program.
    compile("pass", "<warm>", "exec")
    gc.collect()
    gc.freeze()  # candidates' collections skip everything loaded so far: no copy-on-write of the heap
    zygote = _Zygote(state)  # before the first job: no test has ever been in its memory
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the judge sees a closed pipe as an ended run
    signal.signal(signal.SIGALRM, _on_alarm)
    _send(outbox, {"ready": True, "network_namespace": network_isolated, "uid_dropped": uid is not None,
                   "landlock_abi": abi if ruleset is not None else 0, "disk_quota": "tmpfs" if tmpfs else "policy",
                   "pid": os.getpid(), "zygote_pid": zygote.pid, "cpu": cpu})
    current_disk = disk_mb
    while True:
        job = _receive(inbox)
        if job is None:
            return
        if tmpfs and job.get("disk_mb", current_disk) != current_disk:
            if _mount_scratch(native, scratch, job["disk_mb"], remount=True):
                current_disk = job["disk_mb"]
        random_module = sys.modules.get("random")
        if random_module is not None:
            random_module.seed(0)  # tests that draw from the global generator see the same draws every run
        verdict = _verdict(job, zygote, scratch)
        _empty(scratch)
        _send(outbox, verdict)


if __name__ == "__main__":
    main()
