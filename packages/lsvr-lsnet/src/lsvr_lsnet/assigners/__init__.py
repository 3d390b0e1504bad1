"""LSNet's assigners: ``centroid`` (init stage) and ``atss`` over predicted boxes (refine stage), spec §3."""
