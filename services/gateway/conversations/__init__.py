"""Conversations started by Mattermost events: bot tokens, one WebSocket per agent bot, which
posts to answer, claiming a post across replicas, and taking over replies a dead replica left."""
