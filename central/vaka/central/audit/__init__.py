"""The hash-chained audit trail and the record of performed supervisions built from it."""
