"""The topics rumgate creates on a real broker, and their settings."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.live.broker import broker_servers
from streams.live.topics import WINDOWS_MAX_BYTES
from tests.integration.conftest import Pipeline


def topic_config(servers: str, topic: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()
        [resource] = response.resources
        return {entry[0]: entry[1] for entry in resource[4]}  # config_entries: (name, value, ...)

    return asyncio.run(go())


def test_the_windows_topic_takes_summaries_over_a_megabyte(broker, tmp_path):
    """A window summary carries its sessions' hashes and can outgrow the 1 MB a Kafka broker
    takes by default; the worker's producer sends up to WINDOWS_MAX_BYTES, and so must the topic."""
    pipeline = Pipeline(broker, tmp_path)  # creates the topics with ensure_topics
    config = topic_config(broker_servers(broker.url), pipeline.topics.windows)
    assert int(config["max.message.bytes"]) == WINDOWS_MAX_BYTES > 1024 * 1024
