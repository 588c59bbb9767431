"""I/O adapters: code that touches files, the network or third-party loaders."""
