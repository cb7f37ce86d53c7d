"""`make bench`: throughput, latency, state size and scrape cost of opscockpit.

Benchmarks print figures and never assert timings; one fails only when the
system under test misbehaves (wrong counts, a crash). Entry point:
`python -m tests.bench.run [--quick] [--only NAME ...]`.
"""
