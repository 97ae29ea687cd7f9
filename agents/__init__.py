"""The design team: agents, the offline designer and its design heuristic."""
