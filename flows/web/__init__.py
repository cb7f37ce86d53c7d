"""The metrics port's web side: the live wall display at /, its JSON API under
/api/v1/, the probes, and TLS and basic auth from `--web-config` (contract §7)."""
