"""Dashboards, alert rules and their tooling, generated from `flows.metrics.METRICS`.

`rules` declares the recorded series and the alerts with their limits,
`dashboards` the Grafana dashboards coloured by those limits, `push` installs
the dashboards into a running Grafana, and `cli` adds `opscockpit grafana`.
They need the optional `grafana` dependencies; `opscockpit run` does not.
"""
