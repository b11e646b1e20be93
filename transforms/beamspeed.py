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
class) is kept and handed out again while it still shares that object's dict and flags.

The cache above is per object, and a worker unpickles each DoFn afresh for every bundle, so
there each bundle's DoFns were inspected again: ~2,600 ``inspect.signature`` calls per worker
in a 20-page run with 2 workers, ~29 per DoFn (every method the DoFn has, most of them
``DoFn``'s own). ``cache_method_signatures`` keeps the signature of a bound method per
function (``__func__``): a bound method's signature is its function's without the first
parameter, whatever object it is bound to, and the methods of classes that are imported (ours
and Beam's) are the same function objects in every unpickled DoFn. Functions made afresh
(lambdas unpickled with a bundle) miss and are inspected as before.

Each bundle's state sampler (``statesampler.StateSampler``: a thread that adds the time since
its last wake-up to the current step's counter) sleeps up to 200 ms between samples, and the
bundle's end waits for that sleep to finish (``stop`` joins the thread): 0.38 s over the 27
bundles of a 1,000-page run on one worker (0.06 s with 10 ms). ``short_sampling_period``
makes the sampler of local runs wake every ``LOCAL_SAMPLING_PERIOD_MS``; only local runs,
where a process runs one bundle at a time: a worker of a remote runner runs up to hundreds
of bundles at once, each with its sampler."""

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
    """The three caches below, once per process."""
    cache_dofn_specs()
    cache_option_views()
    cache_method_signatures()


LOCAL_SAMPLING_PERIOD_MS = 10


@_once
def short_sampling_period() -> None:
    """Once per process, for local runs (the runner with one worker, the worker pool): state
    samplers made from now on sample every ``LOCAL_SAMPLING_PERIOD_MS`` instead of Beam's
    200 ms, so a bundle's end waits at most that long for the sampler thread. Its step times
    (Beam's msec counters) only get finer."""
    from apache_beam.runners.worker import statesampler

    init = statesampler.StateSampler.__init__
    if init.__defaults__ == (statesampler.DEFAULT_SAMPLING_PERIOD_MS,):
        init.__defaults__ = (LOCAL_SAMPLING_PERIOD_MS,)


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


@_once
def cache_method_signatures() -> None:
    """Once per process: the signature Beam's ``get_function_args_defaults`` takes of a bound
    method is kept per function (see the module's docstring) while the function's defaults
    are the same objects (they are what Beam reads the DoFn parameters from)."""
    import types

    from apache_beam.transforms import core

    compute = core.get_signature
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get_signature(func: Any) -> Any:
        function = getattr(func, "__func__", None) if isinstance(func, types.MethodType) else None
        if not isinstance(function, types.FunctionType):
            return compute(func)
        entry = known.get(function)
        if entry is not None and entry[0] is function.__defaults__ and entry[1] is function.__kwdefaults__:
            return entry[2]
        signature = compute(func)  # Signature objects are immutable: one can be handed out again
        known[function] = (function.__defaults__, function.__kwdefaults__, signature)
        return signature

    get_signature.__wrapped__ = compute  # type: ignore[attr-defined]
    core.get_signature = get_signature
