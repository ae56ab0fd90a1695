"""Text handling, one home: the wikitext cleaner, template rendering, comparison forms and
sentence splitting."""
