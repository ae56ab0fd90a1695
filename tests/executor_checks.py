"""What every executor must show a person: progress that moves as each task finishes."""

from __future__ import annotations

from conftest import nap, progress_lines

# Four quick tasks, then two slow ones: with two workers the quick ones are all done more than
# a second before the last slow one.
NAPS = [0.05, 0.05, 0.05, 0.05, 1.5, 1.5]


def assert_moves_with_each_task(executor, caplog) -> None:
    ends = executor.run(nap, NAPS, desc="napping", weights=[2.0] * len(NAPS))
    lines = progress_lines(caplog, "napping")
    done = [d for _, d, _ in lines]
    # a step for each finished task, never back, up to the whole (an executor may also
    # refresh the line while no task finishes)
    assert sorted(set(done)) == [2.0 * (i + 1) for i in range(len(NAPS))], [m for *_, m in lines]
    assert done == sorted(done)
    # the first lines came while the slow tasks were still running, not all at the end
    assert lines[0][0] < max(ends) - 0.5
    assert sum(1 for t, _, _ in lines if t < max(ends) - 0.5) >= len(NAPS) - 2
    # and they carry an ETA from the rate so far
    assert all("ETA" in m for *_, m in lines[:-1]), [m for *_, m in lines]
