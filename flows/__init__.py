"""opscockpit: exact event-time KPIs of fulfilment events, as Prometheus metrics."""

import os

if os.environ.get("OPSCOCKPIT_PURE_PYTHON"):  # run both builds' code interpreted (tests)
    from flows.build import interpret_everything

    interpret_everything()

__version__ = "0.1.0"
