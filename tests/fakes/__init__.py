"""Local fake ITSM servers for the connector tests, speaking each vendor's documented API."""
