"""MinHash signatures, LSH banding and clustering: the machinery of the dedup stage."""
