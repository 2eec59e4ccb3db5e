"""Python client for Condense (see Protos/README.md and Protos/services.md; usage in Clients/python/README.md).

    from condense_client import Client
    client = Client("127.0.0.1:7433")
    vectors = client.encode(["a text", "another"], prompt="cluster1", pooling="mean")   # np.ndarray (2, dim)
"""
import os
import sys

# protoc's Python output imports its siblings as `condense.v1.*`; make that package importable.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_proto"))

from .client import Client, EmbeddingItemError  # noqa: E402
from .errors import *  # noqa: E402,F401,F403
from .finetune import Adapter, FineTuneJob, JobEvent, read_pairs  # noqa: E402

__all__ = ["Client", "EmbeddingItemError", "Adapter", "FineTuneJob", "JobEvent", "read_pairs"]
