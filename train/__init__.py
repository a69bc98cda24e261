"""Training side of irreid-edge: model, losses, data, trainer and evaluation (torch + runtime)."""
