"""Process supervision for `dsv4ctl serve`: run directories, child process groups, readiness, detach.

Nothing here imports torch or the runtime; the included runtime runs as a child process.
"""
