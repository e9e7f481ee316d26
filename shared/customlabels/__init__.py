"""customlabels: the library every service shares (domain, events, ports, adapters, ML)."""
