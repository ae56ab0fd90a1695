"""Executors: results in task order, and progress that moves as each task finishes (what a
person watching the bar, or reading a cron log, sees)."""

from __future__ import annotations

import pytest

from executor_checks import assert_moves_with_each_task
from conftest import nap, progress_lines
from twiki.errors import ConfigError
from twiki.cli import make_executor
from twiki.engine.executors import LocalExecutor

def test_a_pool_reports_each_task_as_it_finishes(every_progress_line):
    with LocalExecutor(2) as ex:
        ex.warm()  # the pool's start-up is not a task
        assert_moves_with_each_task(ex, every_progress_line)


def test_one_worker_reports_each_task_as_it_finishes(every_progress_line):
    ends = LocalExecutor(1).run(nap, [0.05, 0.05, 1.0], desc="napping")
    lines = progress_lines(every_progress_line, "napping")
    assert [d for _, d, _ in lines] == [1.0, 2.0, 3.0]
    assert lines[0][0] < max(ends) - 0.5


def test_results_come_back_in_task_order_and_a_failure_stops_the_run():
    with LocalExecutor(2) as ex:
        assert ex.run(abs, list(range(0, -20, -1)), desc="abs") == list(range(20))
        with pytest.raises(TypeError):
            ex.run(abs, [1, "x", 3], desc="abs")


def test_workers_must_be_positive_and_the_executor_known():
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        LocalExecutor(0)
    with pytest.raises(ConfigError, match="unknown executor 'spark'; available: local, ray"):
        make_executor("spark")
