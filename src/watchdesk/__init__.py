"""watchdesk: watch news feeds for topics and alert people when an article matches."""

__version__ = "0.1.0"

__all__ = ["__version__"]
