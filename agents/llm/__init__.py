"""Model clients for real runs: providers built from config, retries, the usage ledger, the
record/replay cache and secret redaction. The team sees one ChatCompletionClient per role."""
from .cache import ReplayCache
from .errors import ModelCallError
from .ledger import Caps, UsageLedger
from .managed import ManagedClient
from .retry import RetryPolicy
from .secrets import Redactor

__all__ = ["Caps", "ManagedClient", "ModelCallError", "Redactor", "ReplayCache", "RetryPolicy", "UsageLedger"]
