"""Less start-up work in Beam processes (the runner and each SDK worker).

Beam asks ``userstate.get_dofn_specs`` for the state and timer parameters of a DoFn several
times per DoFn object: when the graph is built and translated, and again when a worker makes
its operations (``is_stateful_dofn``, the DoFn signature, validation). Each answer runs
``inspect.signature`` over every method of the DoFn: a 20-page run on one worker made 502
calls over 123 DoFn objects (16,190 signatures, 0.54 s of its 3.5 s). The answer depends only
on the object's methods, which do not change once it exists, so it is kept per object
(weakly: the object's lifetime bounds the entry).

``PipelineOptions.view_as(cls)`` builds an argparse parser with every option of ``cls`` and
parses the command line again on each call (~0.7 ms), and graph construction calls it ~690
times for our graph (the runner's start, before the first bundle). A view holds no values of
its own: it reads and writes the ``_all_options`` dict it shares with the object it came
from, and which options it shows depends only on ``cls``. So one view per (options object,
class) is kept and handed out again while it still shares that object's dict and flags."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()


def _once(install: Callable[[], None]) -> Callable[[], None]:
    """``install`` run once per process (under a lock; ``.installed`` says whether it ran)."""

    @functools.wraps(install)
    def run_once() -> None:
        if run_once.installed:
            return
        with _lock:
            if not run_once.installed:
                install()
                run_once.installed = True

    run_once.installed = False
    return run_once


def install() -> None:
    """Both caches below, once per process."""
    cache_dofn_specs()
    cache_option_views()


@_once
def cache_option_views() -> None:
    """Once per process: ``PipelineOptions.view_as`` hands out the view it made before for
    the same options object and class (see the module's docstring)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    make_view = PipelineOptions.view_as
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def view_as(self: Any, cls: type) -> Any:
        try:
            views = known.setdefault(self, {})
        except TypeError:  # not weakly referenceable or not hashable: as before
            return make_view(self, cls)
        view = views.get(cls)
        if view is None or view._all_options is not self._all_options or view._flags is not self._flags:
            view = views[cls] = make_view(self, cls)
        return view

    view_as.__wrapped__ = make_view  # type: ignore[attr-defined]
    view_as.__doc__ = make_view.__doc__
    PipelineOptions.view_as = view_as


@_once
def cache_dofn_specs() -> None:
    """Once per process: ``userstate.get_dofn_specs`` answers each DoFn object once. Callers
    get fresh sets each time (they may change what they are given)."""
    from apache_beam.transforms import userstate

    compute = userstate.get_dofn_specs
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        try:
            states, timers = known[dofn]
        except KeyError:
            states, timers = compute(dofn)
            known[dofn] = (frozenset(states), frozenset(timers))
        except TypeError:  # not weakly referenceable or not hashable: as before
            return compute(dofn)
        return set(states), set(timers)

    get_dofn_specs.__wrapped__ = compute  # type: ignore[attr-defined]
    userstate.get_dofn_specs = get_dofn_specs
