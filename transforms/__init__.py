"""storybeam's transforms. In a Beam process (the runner, or a worker unpickling these
DoFns) a start-up cost of Beam's is cut first (``beamspeed``); the extraction child, which
never imports Beam, is left alone."""

import sys

if "apache_beam" in sys.modules:
    from transforms.beamspeed import cache_dofn_specs

    cache_dofn_specs()
