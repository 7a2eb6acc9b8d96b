"""The revisions, named by schema version ("0005", "0006", ...), each upgrading the one before."""
