"""The service tier: the business rules through the operations, with every
service in this process on the embedded adapters (``api`` from
``tests/conftest.py``, on this package's own ``embedded``).

Run it alone with ``pytest tests/service`` (or ``-m service``); ``-m "not
slow"`` leaves out the module that trains a real model.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.api import classification_line, jpeg
from tests.support.embedded import EmbeddedServices, create_ready_dataset
from tests.support.models import flower_photos

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "service: the in-process service tier (tests/service)")


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.service)


@pytest.fixture(scope="package")
async def embedded(tmp_path_factory):
    """The tier's own ``embedded`` (overriding the session's): stopped, and checked for leftovers, as soon as the
    tier is done, so nothing the other tiers' tests leave running is taken for the services' own."""
    async with EmbeddedServices(tmp_path_factory.mktemp("embedded") / "data") as services:
        yield services


@pytest.fixture(scope="package")
async def flowers(embedded, datasets_dir) -> list[tuple[str, str, str]]:
    """Four real photos of each flowers-small label, stored as (bucket, key, label): 20 photos, 5 labels."""
    stored = []
    for i, (label, photo) in enumerate(flower_photos(4)):
        key = f"{label}/{i}.jpg"
        await embedded.put_object("flowers", key, photo)
        stored.append(("flowers", key, label))
    return stored


@pytest.fixture
async def project(api, unique) -> str:
    """A new project named ``unique``: its ARN."""
    return (await api.call("CreateProject", {"ProjectName": unique}))["ProjectArn"]


@pytest.fixture
async def one_label(embedded, project, unique) -> str:
    """A complete TRAIN dataset of ``project`` with one labeled image, so its versions fail at once: its ARN."""
    await embedded.put_object(unique, "a.jpg", jpeg())
    return await create_ready_dataset(embedded, project, [classification_line(unique, "a.jpg", "cat")])
