"""The training room, daemon side: the train stage kind, its driver, progress, diagnosis and the exporter."""
