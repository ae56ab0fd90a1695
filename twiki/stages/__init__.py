"""One module per stage, in pipeline order: extract, diff, training_text, facts, mapping,
factdiff, align, probes, export, report."""
