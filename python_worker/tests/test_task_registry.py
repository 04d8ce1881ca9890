"""asyncio's task registry with the C module's WeakSet hooks (worker.speed_up_task_registry).

``_speedups.weakset_hooks(wset)`` makes ``add`` and ``_remove`` for one ``weakref.WeakSet`` that must
do what the set's own do (Lib/_weakrefset.py): the same contents after the same operations, removals
while the set is iterated deferred to the end of the iteration, no reference kept to the members or
to the set. The worker installs them on the registry ``asyncio.all_tasks()`` lists; that it then
still lists every live task and drops dead ones is checked in a fresh interpreter, on asyncio's loop
and on uvloop's.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import textwrap
import weakref
from typing import Any, List

import pytest

from python_worker import protocol as P

needs_module = pytest.mark.skipif(P.speedups is None, reason="python_worker._speedups is not built")


class Item:
    """A weakly referenceable member."""

    def __init__(self, n: int) -> None:
        self.n = n


def hooked() -> weakref.WeakSet:
    wset: weakref.WeakSet = weakref.WeakSet()
    add, remove = P.speedups.weakset_hooks(wset)
    wset._remove = remove  # type: ignore[attr-defined]
    setattr(wset, "add", add)
    return wset


def contents(wset: weakref.WeakSet) -> List[int]:
    return sorted(item.n for item in wset)


@needs_module
def test_same_contents_as_a_plain_weakset_after_random_operations() -> None:
    rng = random.Random(6)
    plain: weakref.WeakSet = weakref.WeakSet()
    fast = hooked()
    alive: dict = {}  # the members, by number: the only references to them
    outside: list = []
    for step in range(20_000):
        op = rng.random()
        if op < 0.45:  # a new member (in both sets)
            alive[step] = Item(step)
            plain.add(alive[step])
            fast.add(alive[step])
        elif op < 0.8 and alive:  # a member dies (the weak references' callbacks remove it)
            del alive[rng.choice(list(alive))]
        elif op < 0.9 and alive:  # a member dies while both sets are being iterated
            iterators = [iter(plain), iter(fast)]
            held = {next(iterator).n for iterator in iterators}  # (each generator holds what it yielded)
            if not alive.keys() - held:
                continue
            victim = rng.choice(sorted(alive.keys() - held))
            del alive[victim]  # (the last reference)
            assert len(fast._pending_removals) == len(plain._pending_removals) == 1  # type: ignore[attr-defined]
            del iterators  # the iterations end: the removals are committed
            assert len(fast.data) == len(plain.data)  # type: ignore[attr-defined]
        else:  # an explicit discard, as asyncio's _unregister_task does
            if alive:
                outside.append(alive.pop(rng.choice(list(alive))))  # alive, but no longer a member
                plain.discard(outside[-1])
                fast.discard(outside[-1])
        if step % 500 == 0:
            assert contents(fast) == contents(plain)
    assert contents(fast) == contents(plain)
    alive.clear()
    assert len(fast) == len(plain) == 0
    assert not fast._pending_removals  # type: ignore[attr-defined]


@needs_module
def test_removal_during_iteration_waits_and_the_next_add_commits_it() -> None:
    observed = []
    for wset in (weakref.WeakSet(), hooked()):
        members = {n: Item(n) for n in range(4)}
        for n in range(4):
            wset.add(members[n])
        iterator = iter(wset)
        held = next(iterator).n  # the set is being iterated (and the generator holds this one)
        victim = min(members.keys() - {held})
        del members[victim]  # a member dies
        deferred = (len(wset.data), len(wset._pending_removals), len(wset))  # type: ignore[attr-defined]
        newcomer = Item(5)
        wset.add(newcomer)  # WeakSet.add commits pending removals first, even during an iteration
        committed = (len(wset.data), len(wset._pending_removals), len(wset))  # type: ignore[attr-defined]
        del iterator
        gc.collect()
        expected = sorted({0, 1, 2, 3, 5} - {victim})
        observed.append((deferred, committed, contents(wset) == expected, len(wset._iterating)))  # type: ignore[attr-defined]
    plain, fast = observed
    assert fast == plain
    assert plain == ((4, 1, 3), (4, 0, 4), True, 0)


@needs_module
def test_hooks_keep_no_references() -> None:
    fast = hooked()
    item = Item(1)
    before = sys.getrefcount(item)
    for _ in range(1000):
        fast.add(item)
    assert sys.getrefcount(item) == before
    add = fast.add
    probe = weakref.ref(fast)
    del fast
    gc.collect()
    assert probe() is None, "the hooks must not keep their set alive"
    with pytest.raises(ReferenceError):
        add(item)


@needs_module
def test_hook_arguments_are_checked() -> None:
    wset: weakref.WeakSet = weakref.WeakSet()
    add, remove = P.speedups.weakset_hooks(wset)
    with pytest.raises(TypeError):
        add()
    with pytest.raises(TypeError):
        add(Item(1), Item(2))
    with pytest.raises(TypeError):
        add(item=Item(1))
    with pytest.raises(TypeError):
        remove()
    with pytest.raises(TypeError):
        add(1)  # an int cannot be weakly referenced: the same TypeError as WeakSet.add
    with pytest.raises(TypeError):
        P.speedups.weakset_hooks(object())  # not weakly referenceable


CHECK = textwrap.dedent(
    """
    import asyncio, gc, json, sys, weakref
    from python_worker import worker
    installed = worker.speed_up_task_registry()
    again = worker.speed_up_task_registry()
    registry = asyncio.tasks._all_tasks if hasattr(asyncio.tasks, "_all_tasks") else asyncio.tasks._scheduled_tasks
    hooked = "add" in vars(registry)
    loops = [asyncio.new_event_loop]
    try:
        import uvloop
        loops.append(uvloop.new_event_loop)
    except ImportError:
        pass
    async def burst():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(gate.wait()) for _ in range(500)]
        await asyncio.sleep(0)
        listed = len(asyncio.all_tasks())
        gate.set()
        await asyncio.wait(tasks)
        return listed, [weakref.ref(t) for t in tasks]
    async def main():
        listed, refs = await burst()
        gc.collect()
        return listed, len(asyncio.all_tasks()), sum(r() is not None for r in refs)
    seen = []
    for factory in loops:
        loop = factory()
        seen.append(loop.run_until_complete(main()))
        loop.close()
    gc.collect()
    print(json.dumps({"installed": installed, "again": again, "hooked": hooked, "seen": seen,
                      "left": len(registry)}))
    """
)


def run_check(env_extra: dict) -> Any:
    import json
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_module
def test_the_worker_installs_the_hooks_and_asyncio_still_lists_its_tasks() -> None:
    result = run_check({})
    assert result["installed"] is True and result["again"] is True and result["hooked"] is True
    assert len(result["seen"]) == 2, "uvloop is in the test environment"
    for listed, after, alive in result["seen"]:
        assert listed == 501  # the 500 tasks and main
        assert after == 1 and alive == 0
    assert result["left"] == 0


def test_pure_mode_leaves_the_registry_alone() -> None:
    result = run_check({"PYTHON_WORKER_PURE": "1"})
    assert result["installed"] is False and result["hooked"] is False
    for listed, after, alive in result["seen"]:
        assert listed == 501 and after == 1 and alive == 0
