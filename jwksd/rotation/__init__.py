"""Key rotation: KMS-held (or locally made) signing keys, a DynamoDB registry, and the lifecycle between them.

    pending ──(published publish_ahead_s, active due)──► active ──(next key activated)──► retired
    retired ──(retire_grace_s later)──► expired (no longer published; key scheduled for deletion)

``policy.py`` decides, ``registry.py`` records with conditional writes (reading through
``jwksd/aws/registry.py``, as the daemon's ``dynamodb`` source does), ``kms.py`` and ``local.py`` hold
the keys, ``rotate.py``, ``publish.py`` and ``sign.py`` are the ``jwksd keys`` steps, ``cli.py``
their command line. AWS is reached only through ``jwksd/aws/__init__.py``.
"""
