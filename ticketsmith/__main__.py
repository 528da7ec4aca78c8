"""`python -m ticketsmith` runs the CLI."""

from ticketsmith.cli import app

app(prog_name="ticketsmith")
