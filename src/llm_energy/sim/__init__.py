"""The simulated GPU: power and time physics, calibration, clocks, shared state, generation."""
