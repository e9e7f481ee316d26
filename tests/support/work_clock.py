"""A clock for the training code that other processes' load cannot move: this process's CPU seconds.

Training works within a budget of seconds on ``time.monotonic``. On a shared
machine a test's training then gets what the other processes leave it: with
both cores busy elsewhere, a 20 s budget buys half the work (a weaker model)
and every step overruns by its slowed-down length; on a fast machine, more.
So accuracy after a budget, or a budget plus a few seconds, measured on the
wall clock, depend on the machine and its load, not on the code.

``work_clock()`` (a context manager) gives the ML code (every
``customlabels.ml`` module that imported ``time``) a stand-in ``time``
module whose ``monotonic()`` is this process's CPU time divided by torch's
threads: about the wall clock on an idle machine, and still the work done
when the machine is busy. The code's own decisions (how much fits, when to
stop) and the tests' measurements then use the same clock, and an assertion
on either holds on a loaded 2-core machine and on a fast one. Everything
else (pytest, asyncio, other modules) keeps the real clock.

CPU time is work only while idle OpenMP threads sleep rather than spin:
``tests/conftest.py`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch


class WorkClock:
    """Stands in for the ``time`` module: ``monotonic()`` counts work, the rest is the real ``time``."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or torch.get_num_threads()

    def monotonic(self) -> float:
        return time.process_time() / self.threads

    def __getattr__(self, name: str):
        return getattr(time, name)


def _ml_modules() -> list[ModuleType]:
    import customlabels.ml  # noqa: F401 (loads the package so its modules are listed)

    return [module for name, module in list(sys.modules.items())
            if name.startswith("customlabels.ml") and getattr(module, "time", None) is time]


@contextlib.contextmanager
def work_clock() -> Iterator[WorkClock]:
    """The ML code on the work clock while inside; import the training modules before entering."""
    clock = WorkClock()
    with pytest.MonkeyPatch.context() as patch:
        for module in _ml_modules():
            patch.setattr(module, "time", clock)
        yield clock
