"""The llm-energy command: compose, gpu, doctor, compare, grid."""
