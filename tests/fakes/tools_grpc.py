"""A fake agents.tools.v1.Tools server over real gRPC, for testing the conversation loop apart
from the tools service: scripted tools with fixed approval, every execution recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc

from services.common.identity import USER_ID_KEY


@dataclass(frozen=True)
class FakeTool:
    name: str
    auto_approved: bool = False
    result: str = "ok"
    is_error: bool = False


@dataclass(frozen=True)
class Execution:
    tool_name: str
    arguments: dict[str, object]
    user_id: str  # the identity the call carried
    context_user_id: str


@dataclass
class FakeTools(tools_pb2_grpc.ToolsServicer):
    tools: dict[str, FakeTool] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    port: int = 0
    _server: grpc.aio.Server | None = None

    def add(self, tool: FakeTool) -> None:
        self.tools[tool.name] = tool

    async def start(self) -> FakeTools:
        self._server = grpc.aio.server()
        tools_pb2_grpc.add_ToolsServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def ListTools(self, request, context):  # type: ignore[no-untyped-def]
        listed = []
        for tool in self.tools.values():
            schema = {"type": "object", "properties": {"query": {"type": "string"}}}
            msg = tools_pb2.Tool(name=tool.name, description=f"the {tool.name} tool", auto_approved=tool.auto_approved)
            msg.input_schema.update(schema)
            msg.policy.CopyFrom(
                tools_pb2.ToolPolicy(tool_name=tool.name, enabled=True, approval=tools_pb2.APPROVAL_POLICY_ASK)
            )
            listed.append(msg)
        return tools_pb2.ListToolsResponse(tools=listed)

    async def ExecuteTool(self, request, context):  # type: ignore[no-untyped-def]
        metadata = dict(context.invocation_metadata() or ())
        tool = self.tools.get(request.tool_name)
        self.executions.append(
            Execution(
                request.tool_name,
                dict(request.arguments.items()),
                str(metadata.get(USER_ID_KEY, "")),
                request.context.user_id,
            )
        )
        if tool is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown tool {request.tool_name}")
        return tools_pb2.ExecuteToolResponse(content=tool.result, is_error=tool.is_error)
