"""The outermost layer: the command line, the service, the demo."""
