# cython: language_level=3
"""The storefront (contract §3.4): page load, search latency, carts and
recommendations, per page and widget."""

from __future__ import annotations

from typing import Any

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, HISTOGRAM, WEB_LATENCY_BUCKETS, metric

if cython.compiled:
    from cython.cimports.flows.runtime import core
else:
    from flows.runtime import core

PAGE_LOAD = metric(
    "cockpit_page_load_seconds",
    HISTOGRAM,
    "Storefront page load time.",
    ("page",),
    unit="s",
    buckets=WEB_LATENCY_BUCKETS,
    group="customer",
)
SEARCH_LATENCY = metric(
    "cockpit_search_latency_seconds",
    HISTOGRAM,
    "Storefront search latency.",
    (),
    unit="s",
    buckets=WEB_LATENCY_BUCKETS,
    group="customer",
)
ZERO_RESULTS = metric(
    "cockpit_searches_zero_results_total",
    COUNTER,
    "Searches that found nothing.",
    group="customer",
)
CART_UNITS = metric(
    "cockpit_cart_units_added_total", COUNTER, "Units added to carts.", group="customer"
)
SHOWN = metric(
    "cockpit_recommendations_shown_total",
    COUNTER,
    "Recommendation impressions.",
    ("widget",),
    group="customer",
)
CLICKED = metric(
    "cockpit_recommendations_clicked_total",
    COUNTER,
    "Recommendation clicks.",
    ("widget",),
    group="customer",
)


@cython.cclass
class Storefront(core.Family):
    """Counters and histograms of storefront traffic."""

    NAME = "storefront"
    KINDS = (
        "page.viewed",
        "search.performed",
        "cart.added",
        "recommendation.shown",
        "recommendation.clicked",
    )
    METRICS = (PAGE_LOAD, SEARCH_LATENCY, ZERO_RESULTS, CART_UNITS, SHOWN, CLICKED)

    pages: dict  # type: ignore[type-arg]
    widgets: dict  # type: ignore[type-arg]
    page_load: core.Histogram
    search_latency: core.Histogram
    zero_results: core.Counts
    cart_units: core.Counts
    shown: core.Counts
    clicked: core.Counts

    def attach(self) -> None:
        context = self.context
        self.pages, self.widgets = context.known_values("page"), context.known_values("widget")
        self.page_load = context.histogram(PAGE_LOAD)
        self.search_latency = context.histogram(SEARCH_LATENCY)
        self.zero_results, self.cart_units = (
            context.counts(ZERO_RESULTS),
            context.counts(CART_UNITS),
        )
        self.shown, self.clicked = context.counts(SHOWN), context.counts(CLICKED)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        if kind == "page.viewed":
            self.page_viewed(event)
        elif kind == "recommendation.shown":
            self.shown.add(self.widget(event))
        elif kind == "search.performed":
            self.search_performed(event)
        elif kind == "cart.added":
            self.cart_units.add((), event.qty)
        else:  # recommendation.clicked
            self.clicked.add(self.widget(event))

    @cython.cfunc
    def page_viewed(self, event: Any) -> None:
        page = self.pages.get(event.page) or self.context.label("page", event.page)
        self.page_load.observe(page, event.load_ms / 1000)

    @cython.cfunc
    def search_performed(self, event: Any) -> None:
        self.search_latency.observe((), event.latency_ms / 1000)
        if event.results == 0:
            self.zero_results.add(())

    @cython.cfunc
    def widget(self, event: Any) -> str:
        return self.widgets.get(event.widget) or self.context.label("widget", event.widget)
