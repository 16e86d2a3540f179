"""The read-only web viewer: runs, a run's funnel, and the evidence behind each step."""
