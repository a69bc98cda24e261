"""``irreid-edge serve``: the service (service.py, batcher.py, framework-free) and its HTTP layer (app.py)."""
