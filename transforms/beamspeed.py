"""Less start-up work in Beam processes (the runner and each SDK worker).

Beam asks ``userstate.get_dofn_specs`` for the state and timer parameters of a DoFn several
times per DoFn object: when the graph is built and translated, and again when a worker makes
its operations (``is_stateful_dofn``, the DoFn signature, validation). Each answer runs
``inspect.signature`` over every method of the DoFn: a 20-page run on one worker made 502
calls over 123 DoFn objects (16,190 signatures, 0.54 s of its 3.5 s). The answer depends only
on the object's methods, which do not change once it exists, so it is kept per object
(weakly: the object's lifetime bounds the entry)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

_installed = False
_lock = threading.Lock()


def cache_dofn_specs() -> None:
    """Once per process: ``userstate.get_dofn_specs`` answers each DoFn object once. Callers
    get fresh sets each time (they may change what they are given)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
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
        _installed = True
