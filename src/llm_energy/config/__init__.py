"""The typed, validated configuration (values live in conf/ only) and infeasible combinations."""
