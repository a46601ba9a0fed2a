"""The checkpoints room, torch-free: inspect, prepare a resume, watch, copy, publish on home and restore."""
