"""The conversation loop of the llm service (agents.llm.v1.Conversations); wired in
``services/llm/server.py``.

The path of one DM, file by file: ``servicer.py`` (Respond) → ``answers.py`` (checks, the
conversation, the stream row, the prompt from ``history.py`` and ``prompts.py``) → ``runs.py``
(the turn runs detached from its caller) → ``turns.py`` (the "agent run" span, stop watch, state
row) → ``loop.py`` (model rounds and tool calls) → ``services/llm/completion.py`` (trim, provider
stream, observation) and back as events through ``conversation_proto.py``. AI actions take
``analysis.py``/``meetings.py`` → ``actions.py`` → ``turns.py``; the gateway's post claims are
``claims.py``.
"""
