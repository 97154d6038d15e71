"""Serving a logged poster model: the pyfunc, its guarded scoring app, micro-batching of
concurrent requests, and one answer's explanation overlay."""
