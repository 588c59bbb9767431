"""What was answered, scored: ROUGE, SQuAD v2 EM/F1, perplexity, and the evaluate scripts."""
