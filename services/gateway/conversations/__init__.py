"""Conversations started by Mattermost events: one WebSocket per agent bot (``listener``), which
posts to answer (``triggers``), claiming a post across replicas (``claims``), answering it and
taking over replies a dead replica left (``responder``), all run by ``runner``. The agents come
from the gateway's directory and the reply posts are written through its reply service."""
