"""Data access: the data directory, loaders for Flickr8k triples, caption corpus and SentEval."""
