"""The three ports (documents, events, blobs) and the operation router."""
