"""pytest plugin (-p cpu_per_test): CPU seconds (user + sys, this process and its waited-for children) and wall seconds per test,
setup + call + teardown, written as JSON to $CPU_PER_TEST_OUT at the end of the session."""
import json
import os
import resource
import time

import pytest

_rows: dict[str, list[float]] = {}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ANN001, ANN201
    cpu, wall = _cpu(), time.perf_counter()
    yield
    _rows[item.nodeid] = [_cpu() - cpu, time.perf_counter() - wall]


def pytest_sessionfinish(session):  # noqa: ANN001, ANN201
    path = os.environ.get("CPU_PER_TEST_OUT")
    if path:
        with open(path, "w") as handle:
            json.dump(_rows, handle, indent=0)
