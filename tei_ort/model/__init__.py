"""The model: resolution (hub or local), inspection, the engine cache, loading."""
