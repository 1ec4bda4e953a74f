"""Engines behind one interface (`base.Engine`): the simulated CPU stand-in; vLLM runs as its own server."""
