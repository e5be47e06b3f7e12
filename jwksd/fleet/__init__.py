"""The fleet's shared cache: replicas share, through Redis, what one of them fetched from a source.

``source.py`` puts a source behind the cache (same protocol, so the refresh loop does not change), ``entry.py``
is what is stored (sealed with the source's identity and an HMAC), ``cache.py`` is the Redis client (the only
module that knows aiocache and redis). ``source_set.py`` decides which sources go behind it.
"""
