"""Errors that reach the user as one clear message (the CLI prints them without a traceback)."""


class TicketsmithError(Exception):
    """Base class for errors whose message is meant for the user."""


class ConfigError(TicketsmithError):
    """A configuration file is missing, malformed or inconsistent."""


class ModelError(TicketsmithError):
    """A model file cannot be found, loaded or used."""


class TicketError(TicketsmithError):
    """One ticket cannot be triaged (e.g. empty text); the rest of a batch goes on."""


class DecodingError(TicketsmithError):
    """The model produced an answer that does not validate; never passed on silently."""
