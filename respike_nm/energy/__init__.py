"""Energy accounting: hardware profiles, operation counters and per-target estimates."""
