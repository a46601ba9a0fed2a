"""The daemon room: the detached process, its control loop (supervisor), the lease it holds, logs and mirror."""
