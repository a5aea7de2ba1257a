"""The per-workload agent: writes Envoy's bootstrap, supervises Envoy, reports readiness."""
