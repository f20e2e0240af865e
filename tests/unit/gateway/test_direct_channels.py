"""Reading a user's DM partners from the channel names Mattermost gives DMs (``<id>__<id>``, sorted)."""

from __future__ import annotations

from services.common.mattermost import Channel
from services.gateway.direct_channels import dm_partners


def test_dm_partners_maps_the_other_user_to_the_channel_whichever_side_the_user_is() -> None:
    channels = [Channel(id="c1", type="D", name="aaa__zzz"), Channel(id="c2", type="D", name="bbb__mmm")]
    assert dm_partners("mmm", channels) == {"bbb": "c2"}
    assert dm_partners("aaa", channels) == {"zzz": "c1"}


def test_dm_partners_ignores_group_team_and_deleted_channels() -> None:
    channels = [
        Channel(id="g", type="G", name="aaa__bbb"),
        Channel(id="o", type="O", name="aaa__ccc", team_id="t"),
        Channel(id="d", type="D", name="aaa__ddd", delete_at=5),
    ]
    assert dm_partners("aaa", channels) == {}
