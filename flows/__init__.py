"""opscockpit: exact event-time KPIs of fulfilment events, as Prometheus metrics."""

__version__ = "0.1.0"
