"""Readers of what Wikimedia publishes: the dump download (listing, dumpstatus.json, verified
files), the Wikidata JSON entity dump, the page_props SQL dump."""
