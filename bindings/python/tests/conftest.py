import pytest

import channelbox


@pytest.fixture
def hub():
    with channelbox.Hub() as h:
        yield h


@pytest.fixture(autouse=True)
def fresh_channel_box():
    """Every test starts with no groups and an empty, default history."""
    box = channelbox.ChannelBox
    saved = (box.HISTORY_MANAGER, box.SEND_TIMEOUT, box.MAX_PENDING)
    box.CHANNEL_GROUPS = {}
    box.HISTORY_MANAGER = channelbox.InMemoryHistoryManager(history_size=box.HISTORY_SIZE)
    yield
    box.CHANNEL_GROUPS = {}
    box.HISTORY_MANAGER, box.SEND_TIMEOUT, box.MAX_PENDING = saved
