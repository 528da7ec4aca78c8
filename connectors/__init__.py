"""Getting tickets in and results out: the durable job store (so far); ITSM connectors and the
inbox folder come with their issue."""
