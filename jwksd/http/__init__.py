"""The HTTP side: what verifiers, load balancers and Prometheus talk to, answered from the served snapshot.

``app.py`` builds the aiohttp applications (routes, and the resources behind them in start-up order);
``cache.py`` answers conditional GETs with the cache headers, and ``accept_encoding.py`` decides who gets
gzip; ``health.py`` serves /health, /healthz and /readyz; ``oidc.py`` the discovery document;
``request_metrics.py`` counts and times every route; ``server.py`` caps connections and bounds writes;
``tls.py`` and ``tls_renewal.py`` serve HTTPS and renew its certificate in place.

Every import is absolute (``jwksd.http.app``), so ``import http`` anywhere still means the standard library.
"""
