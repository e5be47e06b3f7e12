"""jwksd: serve the JWT verification keys kept in AWS."""

__version__ = "0.1.0"
