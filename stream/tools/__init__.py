"""Tools around a running pipeline: the demo, traffic, ``tail``, ``top``, plots, dashboards,
Grafana, a local Prometheus and the demo's summary.  They sit on the runtime and the engines;
the CLI calls them.
"""
