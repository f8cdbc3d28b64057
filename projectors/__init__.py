"""Projectors map encoder tokens into a backbone's embedding space. Never imports ``zoo``."""
