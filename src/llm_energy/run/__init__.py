"""Code that runs models on a device (torch). Kept apart from the pure modules and from file IO."""
