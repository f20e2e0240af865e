"""Decoding Mattermost's JSON into the client's models: lenient, as servers omit empty fields."""

from __future__ import annotations

import json

import pytest

from services.common.mattermost import Post, User, UserAccessToken, WebSocketEvent
from services.common.mattermost.models import posts_from_post_list


def test_missing_fields_and_fields_of_another_type_take_their_zero_values() -> None:
    user = User.from_json({"id": "u1", "username": 7, "delete_at": True, "timezone": [], "is_bot": 1, "extra": "x"})
    assert (user.id, user.username, user.delete_at, user.timezone, user.is_bot) == ("u1", "", 0, {}, True)
    post = Post.from_json({"id": "p1", "file_ids": ["f1", 2, None, "f2"], "create_at": "12", "props": None})
    assert (post.id, post.file_ids, post.create_at, post.props, post.message) == ("p1", ("f1", "f2"), 0, {}, "")


def test_a_websocket_event_decodes_its_post_and_mentions_and_keeps_what_does_not_decode() -> None:
    post = {"id": "p1", "channel_id": "c1", "user_id": "u1", "message": "hi @bot"}
    frame = {"event": "posted", "seq": 3, "data": {"post": json.dumps(post), "mentions": '["b1"]'}, "broadcast": {}}
    event = WebSocketEvent.from_json(frame)
    assert event.post == Post(**post) and event.data["mentions"] == ["b1"] and event.seq == 3
    assert isinstance(frame["data"]["post"], str)  # the frame itself is left as it came
    broken = WebSocketEvent.from_json({"event": "posted", "data": {"post": "{not json"}})
    assert broken.post is None and broken.data == {"post": "{not json"} and broken.broadcast == {}


def test_a_post_list_gives_its_posts_in_order_and_skips_ids_it_lacks() -> None:
    posts = posts_from_post_list({"order": ["b", "gone", "a"], "posts": {"a": {"id": "a"}, "b": {"id": "b"}}})
    assert [p.id for p in posts] == ["b", "a"]


def test_an_access_token_keeps_its_secret_out_of_repr() -> None:
    token = UserAccessToken.from_json({"id": "t1", "user_id": "u1", "token": "s3cret"})
    assert token.token == "s3cret" and "s3cret" not in repr(token)


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ({"useAutomaticTimezone": "true", "automaticTimezone": "Asia/Tokyo", "manualTimezone": "UTC"}, "Asia/Tokyo"),
        ({"useAutomaticTimezone": "false", "automaticTimezone": "Asia/Tokyo", "manualTimezone": "UTC"}, "UTC"),
        # The spec: useAutomaticTimezone "Defaults to "true"".
        ({"automaticTimezone": "Asia/Tokyo", "manualTimezone": "UTC"}, "Asia/Tokyo"),
        ({}, ""),
    ],
)
def test_the_preferred_timezone_is_the_automatic_one_unless_the_user_chose_one(
    timezone: dict[str, str], expected: str
) -> None:
    assert User.from_json({"id": "u1", "timezone": timezone}).preferred_timezone == expected
