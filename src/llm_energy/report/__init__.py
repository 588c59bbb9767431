"""What a reader sees: figures, sentences, tables, the Markdown/HTML report, comparisons."""
