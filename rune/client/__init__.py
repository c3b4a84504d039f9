"""``rune.client``: the Python side of RUNE's topics, for services around it.

- :class:`FactProducer`: fact and entity events (and bundles) with the keys and partitions
  ingest requires; returns consistency :class:`Token` s;
- :class:`Requests`: send a request, await its decision by id (optionally with a token);
- :class:`DecisionReader`: typed decisions (:class:`~rune.policies.decision.Decision`),
  deduplicated by id;
- :class:`ChangefeedReader`: the changefeed materialized, complete per checkpoints.

Built on confluent-kafka (librdkafka); synchronous; importable without a running service.
Connections take a bootstrap address or :class:`KafkaOptions` (TLS/SASL in ``librdkafka``);
topic names default to ``rune.*`` (pass a :class:`rune.config.Topics` otherwise). Errors
derive from :class:`ClientError` (a :class:`rune.errors.RuneError`). docs/streaming.md has a
worked example.
"""

from rune.client.errors import ClientError, ClientTimeout, DeliveryFailed
from rune.client.producer import FactProducer, Receipt, entity_json
from rune.client.readers import Change, ChangefeedReader, DecisionReader, decision_from_json
from rune.client.requests import Requests, new_request_id
from rune.client.tokens import Token
from rune.config import Topics
from rune.connectors.kafka.options import KafkaOptions
from rune.ivm.values import EntityRef
from rune.policies.decision import Decision

__all__ = [
    "Change",
    "ChangefeedReader",
    "ClientError",
    "ClientTimeout",
    "Decision",
    "DecisionReader",
    "DeliveryFailed",
    "EntityRef",
    "FactProducer",
    "KafkaOptions",
    "Receipt",
    "Requests",
    "Token",
    "Topics",
    "decision_from_json",
    "entity_json",
    "new_request_id",
]
