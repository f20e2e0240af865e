# One image for every service; the chart picks the service with `python -m services.<name>`.
# Build: docker build -t REGISTRY/mattermost-agents:TAG .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY services/ services/
COPY deploy/docker/install.sh deploy/docker/install.sh
RUN sh deploy/docker/install.sh /opt/agents

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mattermost-agents" \
      org.opencontainers.image.description="Self-hosted AI agents backend for Mattermost (gRPC services)"
RUN groupadd --system --gid 10001 agents \
    && useradd --system --uid 10001 --gid agents --home-dir /nonexistent --no-create-home agents
COPY --from=build /opt/agents /opt/agents
# Nothing is written at run time except under /tmp (an emptyDir in the chart), so the root
# filesystem can be read-only; bytecode was compiled at install time.
ENV PATH=/opt/agents/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/agents
USER 10001:10001
EXPOSE 8700 50051 50052 50053 50054
CMD ["python", "-m", "services.gateway"]
