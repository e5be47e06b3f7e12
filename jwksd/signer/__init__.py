"""``jwksd signer``: a local signing service that signs JWTs with the registry's active key, and nothing else.

    registry head ──view.py (every refresh_s)──► keys.py (KMS Sign, or the private key in memory)
                                                    │
    caller ──listen.py (Unix socket, LISTEN_FDS, loopback TCP + bearer)──► api.py ──► claims.py ──► token
                                                    │
                                 audit.py (SO_PEERCRED, one line per token), metrics.py

``app.py`` wires them, ``run.py`` runs them until SIGTERM. The signer reads [rotation] for the
registry, backend and endpoints and [signer] for itself; it never writes to the registry.
"""
