"""`make bench`: each stage's speed, memory and quality figures (data/bench/results.{json,md}).
Not installed; the tests import nothing from here."""
