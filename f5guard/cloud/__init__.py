"""Is a file on home in the cloud, or only in this VM's cache? The store's evidence (``evidence``), the kind of
home it comes from (``detect``), what records of checkpoints are worth (``records``), and what a home offers
(``survey``, for ``f5guard doctor``). Torch-free, no torch: the daemon, status and the CLI all read it."""
