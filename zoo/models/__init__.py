"""The two model families the zoo assembles: ``MultimodalLM`` and ``DualEncoder``."""
