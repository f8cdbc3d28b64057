"""Task definitions, data readers, heads and metrics (pure functions). Never imports ``zoo``."""
