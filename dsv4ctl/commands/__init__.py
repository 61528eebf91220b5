"""One module per room of commands; each exposes `register(app)`."""
