"""What the collector reports about itself: counters, metrics, health, logs.

A leaf: every other package may import it; it imports none of them.
"""
