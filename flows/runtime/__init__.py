"""The event-time runtime: admission, watermarks, timers, windows, snapshots, and
the combine stage. It knows no KPI: KPI families (`flows.kpis`) and the entities
they share (`flows.entities`) plug into it."""
