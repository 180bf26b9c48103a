"""The cluster: sweeps as Ray Jobs, and the tracking server they share."""
