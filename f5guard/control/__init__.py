"""The control room: what the CLI and the daemon say to each other (protocol), how the client asks (client) and
how the daemon listens (server).

Kept empty: ``control.client`` is imported by `status`'s fast path, which may import nothing else.
"""
