"""The status room: the report, its renderer, the client's fast path and the daemon's answer to it.

Kept empty: ``status.quick`` must import nothing beyond the standard library.
"""
