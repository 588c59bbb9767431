"""What is asked: task specs, sampled items, passages and prompt rendering (pure)."""
