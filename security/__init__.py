"""Personal-data protection: encryption at rest, keyed lookups, ID validation, masking, log redaction."""
