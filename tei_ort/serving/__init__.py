"""Serving below the front ends: validation, encoding, queue, batcher, engine threads, metrics."""
