"""`make bench`: jwksd against a bare aiohttp handler, nginx and Node.js, all on 127.0.0.1, in ratios."""
