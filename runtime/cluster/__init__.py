"""Several warmstart nodes on one shared store: the node registry, routing of sync invokes,
and the cluster-wide concurrency tokens (DESIGN §9)."""
