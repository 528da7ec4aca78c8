"""GBNF grammars generated from taxonomies by `ticketsmith grammar`."""
