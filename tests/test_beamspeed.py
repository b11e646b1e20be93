"""Caches of Beam start-up work (transforms/beamspeed.py): DoFn state and timer specs, option views."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

import transforms  # noqa: F401 - installs the cache in a process that has Beam
from transforms.beamspeed import LOCAL_SAMPLING_PERIOD_MS, cache_dofn_specs


class _Stateful(beam.DoFn):
    BAG = userstate.BagStateSpec("bag", VarIntCoder())
    TIMER = userstate.TimerSpec("timer", TimeDomain.WATERMARK)

    def process(self, element, bag=beam.DoFn.StateParam(BAG), timer=beam.DoFn.TimerParam(TIMER)):  # noqa: B008 - Beam's idiom
        yield element

    @userstate.on_timer(TIMER)
    def expire(self):
        return []


class _Unhashable(beam.DoFn):
    __hash__ = None  # type: ignore[assignment]

    def process(self, element):
        yield element


def _fresh_cache_counting(monkeypatch, install, module, name: str) -> tuple[list, object]:
    """Installs ``install``'s cache again, this time around a compute that records its
    arguments (the installed one's ``__wrapped__``); (the calls, Beam's own compute)."""
    install()
    assert install.installed and hasattr(getattr(module, name), "__wrapped__")
    compute = getattr(module, name).__wrapped__
    calls: list = []

    def counting(arg):
        calls.append(arg)
        return compute(arg)

    monkeypatch.setattr(install, "installed", False)
    monkeypatch.setattr(module, name, counting)
    install()
    return calls, compute


def test_specs_come_from_the_cache_once_per_dofn(monkeypatch):
    calls, compute = _fresh_cache_counting(monkeypatch, cache_dofn_specs, userstate, "get_dofn_specs")
    fresh = userstate.get_dofn_specs
    dofn = _Stateful()
    first = fresh(dofn)
    assert first == compute(dofn) and [s.name for s in first[0]] == ["bag"] and len(first[1]) == 1
    first[0].clear()  # callers get their own sets
    assert fresh(dofn) == compute(dofn)
    assert userstate.is_stateful_dofn(dofn)  # Beam's own callers go through the cache too
    assert calls == [dofn]
    other = _Stateful()
    assert fresh(other) == compute(other) and calls == [dofn, other]
    plain = _Unhashable()
    assert fresh(plain) == (set(), set()) and fresh(plain) == (set(), set())
    assert calls[2:] == [plain, plain]  # not hashable: computed each time, as before


def test_the_runner_has_the_cache_when_transforms_came_before_beam_and_local_runs_sample_often():
    # the command line imports transforms (settings, errors) before Beam: the graph's module
    # must install the cache itself
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; import transforms; assert 'apache_beam' not in sys.modules; "
        "import pipeline.build; from apache_beam.transforms import userstate; "
        "print(hasattr(userstate.get_dofn_specs, '__wrapped__')); "
        # the state sampler keeps Beam's period until a local runner is made
        "from apache_beam.runners.worker.statesampler import StateSampler; "
        "from apache_beam.utils.counters import CounterFactory; "
        "print(StateSampler('a', CounterFactory()).sampling_period_ms); "
        "from pipeline.workerpool import local_runner; local_runner(); "
        "print(StateSampler('b', CounterFactory()).sampling_period_ms)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "200", str(LOCAL_SAMPLING_PERIOD_MS)]


def test_option_views_are_kept_per_options_object_and_class():
    from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions

    from transforms.beamspeed import cache_option_views

    cache_option_views()
    make_view = PipelineOptions.view_as.__wrapped__
    options = PipelineOptions(["--runner=DirectRunner", "--experiments=a", "--direct_num_workers=2"])
    view = options.view_as(StandardOptions)
    assert options.view_as(StandardOptions) is view  # kept
    stock = make_view(options, StandardOptions)  # Beam's own view of the same options
    assert view._visible_option_list() == stock._visible_option_list() and view.runner == stock.runner
    assert options.view_as(DebugOptions).experiments == ["a"]
    view.streaming = True  # written through one view: read through any other and the source
    assert stock.streaming and options.view_as(StandardOptions).streaming
    assert options.get_all_options()["streaming"] is True
    other = PipelineOptions(["--runner=DirectRunner"])  # another object: views of its own
    assert other.view_as(StandardOptions) is not view and not other.view_as(StandardOptions).streaming
    assert other.view_as(DebugOptions).experiments is None
    # a view of a view shares the same values
    assert view.view_as(DebugOptions).experiments == ["a"]
    options._all_options = dict(options._all_options)  # replaced store: the old view is not handed out
    assert options.view_as(StandardOptions) is not view


def test_method_signatures_are_kept_per_function_and_follow_their_defaults(monkeypatch):
    from apache_beam.transforms import core

    import transforms.beamspeed as beamspeed

    calls, _ = _fresh_cache_counting(monkeypatch, beamspeed.cache_method_signatures, core, "get_signature")
    one, two = _Stateful(), _Stateful()  # two unpickled copies of one DoFn share its functions
    args, defaults = core.get_function_args_defaults(one.process)
    assert args == ["element", "bag", "timer"] and [d.state_spec.name for d in defaults[:1]] == ["bag"]
    assert core.get_function_args_defaults(two.process) == (args, defaults)
    assert len(calls) == 1  # the second object's method came from the cache
    # Beam's whole-DoFn look-up gives what it gave without the cache
    assert userstate.get_dofn_specs.__wrapped__(two) == userstate.get_dofn_specs.__wrapped__(one)

    def process(self, element, extra=1):
        yield element

    class Changing(beam.DoFn):
        pass

    Changing.process = process
    assert core.get_function_args_defaults(Changing().process) == (["element", "extra"], [1])
    process.__defaults__ = (2,)  # new defaults: inspected again
    assert core.get_function_args_defaults(Changing().process) == (["element", "extra"], [2])
    # plain functions and lambdas (made afresh with each bundle) are inspected each time
    fn = lambda x, y=3: x  # noqa: E731
    assert core.get_function_args_defaults(fn) == (["x", "y"], [3]) == core.get_function_args_defaults(fn)
    assert calls.count(fn) == 2
