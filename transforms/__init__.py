"""storybeam's transforms. In a Beam process (the runner, or a worker unpickling these
DoFns) start-up costs of Beam are cut first (``beamspeed``); the extraction child, which
never imports Beam, is left alone."""

import sys

if "apache_beam" in sys.modules:
    from transforms.beamspeed import install

    install()
