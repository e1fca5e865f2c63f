"""Call metrics: aggregates in Redis, Prometheus /metrics, live dashboards (see keys.py, services.py)."""
