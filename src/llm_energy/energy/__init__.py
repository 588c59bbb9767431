"""Energy measurement: the window, the meter, the power timeline, codecarbon's estimate."""
