"""Keras against its TFLite variants: accuracy, latency, size and memory, saved as a report."""
