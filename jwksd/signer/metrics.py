"""The signer's Prometheus metrics, on a registry of their own, every label value created up front."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from jwksd import __version__

OUTCOMES = ("signed", "bad_request", "unauthorized", "unavailable", "failed")
NO_KID = "none"  # the kid label of a request refused before a key was chosen
AWS_OPERATIONS = ("GetItem", "Sign", "GetPublicKey", "GetSecretValue")
AWS_CODES = ("ok", "ThrottlingException", "AccessDeniedException", "DisabledException", "KMSInvalidStateException",
             "NotFoundException", "timeout", "network")
SIGN_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VIEW_OUTCOMES = ("unchanged", "changed", "failed")


class SignerMetrics:
    """Every metric ``jwksd signer`` exports; one instance per signer (and per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tokens = Counter("jwksd_signer_tokens", "Sign requests by kid (none: refused before a key was "
                              "chosen) and outcome.", ["kid", "outcome"], registry=r)
        self.sign_duration = Histogram("jwksd_signer_sign_duration_seconds", "Time to sign one token (the KMS "
                                       "call or the local signature), by backend.", ["backend"],
                                       buckets=SIGN_BUCKETS_S, registry=r)
        self.aws_calls = Counter("jwksd_signer_aws_calls", "Calls to AWS (each attempt) by operation and result "
                                 "code: Sign is KMS signing.", ["operation", "code"], registry=r)
        self.view_reads = Counter("jwksd_signer_registry_reads", "Reads of the registry head by outcome: "
                                  "unchanged, changed (key items re-read) or failed.", ["outcome"], registry=r)
        self.view_revision = Gauge("jwksd_signer_registry_revision", "The registry revision in the signer's view.",
                                   registry=r)
        self.view_confirmed = Gauge("jwksd_signer_registry_confirmed_timestamp_seconds", "Unix time the registry "
                                    "head was last read.", registry=r)
        self.ready = Gauge("jwksd_signer_ready", "1 while an active key is known and usable, else 0.", registry=r)
        self.active = Info("jwksd_signer_active_key", "The kid and alg the signer signs with now.", registry=r)
        self.build_info = Info("jwksd_signer_build", "Version of jwksd.", registry=r)
        self.build_info.info({"version": __version__})
        self.active.info({"kid": NO_KID, "alg": ""})
        for outcome in OUTCOMES:
            self.tokens.labels(NO_KID, outcome)
        for operation in AWS_OPERATIONS:
            for code in AWS_CODES:
                self.aws_calls.labels(operation, code)
        for outcome in VIEW_OUTCOMES:
            self.view_reads.labels(outcome)

    def count_aws(self, operation: str, code: str) -> None:
        """The ``on_call`` of the signer's AWS clients."""
        self.aws_calls.labels(operation, code).inc()

    def prepare_kid(self, kid: str) -> None:
        """Create a kid's token counters at 0 when it becomes the active key."""
        for outcome in OUTCOMES:
            self.tokens.labels(kid, outcome)
