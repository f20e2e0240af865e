"""agents.tools.v1.Tools: thin translation between messages and ``ToolService``."""

from __future__ import annotations

import grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import json_format, struct_pb2

from services.common.errors import InvalidInput
from services.common.identity import identity
from services.tools.execution import ToolService
from services.tools.policies import Approval, AutoRunScope, Offer, ToolContext, ToolPolicy

_APPROVAL_TO_PB = {
    Approval.AUTO: tools_pb2.APPROVAL_POLICY_AUTO,
    Approval.ASK: tools_pb2.APPROVAL_POLICY_ASK,
    Approval.DISABLED: tools_pb2.APPROVAL_POLICY_DISABLED,
}
_APPROVAL_FROM_PB = {v: k for k, v in _APPROVAL_TO_PB.items()}
_SCOPE_TO_PB = {
    AutoRunScope.DM: tools_pb2.AUTO_RUN_SCOPE_DM,
    AutoRunScope.EVERYWHERE: tools_pb2.AUTO_RUN_SCOPE_EVERYWHERE,
}
_SCOPE_FROM_PB = {v: k for k, v in _SCOPE_TO_PB.items()}


def _context(message: tools_pb2.ToolContext) -> ToolContext:
    return ToolContext(
        user_id=message.user_id,
        agent_id=message.agent_id,
        channel_id=message.channel_id,
        team_id=message.team_id,
        is_direct_message=message.is_direct_message,
        conversation_id=message.conversation_id,
        automated_invoker=message.automated_invoker,
        bound_channel_id=message.bound_channel_id,
    )


def _policy_to_pb(policy: ToolPolicy) -> tools_pb2.ToolPolicy:
    return tools_pb2.ToolPolicy(
        tool_name=policy.tool_name,
        enabled=policy.enabled,
        approval=_APPROVAL_TO_PB[policy.approval],
        auto_run_scope=_SCOPE_TO_PB[policy.auto_run_scope],
    )


def _policy_from_pb(message: tools_pb2.ToolPolicy) -> ToolPolicy:
    approval = _APPROVAL_FROM_PB.get(message.approval)
    if approval is None:
        raise InvalidInput("policy.approval must be AUTO, ASK or DISABLED", field="policy.approval")
    # An unset scope means the narrower one: auto-run in DMs only.
    scope = _SCOPE_FROM_PB.get(message.auto_run_scope, AutoRunScope.DM)
    return ToolPolicy(message.tool_name, message.enabled, approval, scope)


def _tool_to_pb(offer: Offer) -> tools_pb2.Tool:
    schema = struct_pb2.Struct()
    schema.update(offer.spec.input_schema)
    return tools_pb2.Tool(
        name=offer.spec.name,
        description=offer.spec.description,
        input_schema=schema,
        server_origin=offer.spec.server_origin,
        policy=_policy_to_pb(offer.policy),
        writes=offer.spec.writes,
        auto_approved=offer.auto_approved,
    )


class ToolsServicer(tools_pb2_grpc.ToolsServicer):
    """Every RPC of agents.tools.v1.Tools."""

    def __init__(self, service: ToolService) -> None:
        self.service = service

    async def ListTools(
        self,
        request: tools_pb2.ListToolsRequest,
        context: grpc.aio.ServicerContext[tools_pb2.ListToolsRequest, tools_pb2.ListToolsResponse],
    ) -> tools_pb2.ListToolsResponse:
        """Tools the agent may use for the user in the context, with effective policies."""
        offered = await self.service.list_tools(identity(), _context(request.context))
        return tools_pb2.ListToolsResponse(tools=[_tool_to_pb(o) for o in offered])

    async def ExecuteTool(
        self,
        request: tools_pb2.ExecuteToolRequest,
        context: grpc.aio.ServicerContext[tools_pb2.ExecuteToolRequest, tools_pb2.ExecuteToolResponse],
    ) -> tools_pb2.ExecuteToolResponse:
        """Runs one tool as the requesting user."""
        arguments = json_format.MessageToDict(request.arguments) if request.HasField("arguments") else {}
        result = await self.service.execute(
            identity(), _context(request.context), request.tool_name, arguments, request.tool_call_id
        )
        return tools_pb2.ExecuteToolResponse(
            content=result.content,
            is_error=result.is_error,
            citations=[tools_pb2.Citation(url=c.url, title=c.title, snippet=c.snippet) for c in result.citations],
        )

    async def GetPolicy(
        self,
        request: tools_pb2.GetPolicyRequest,
        context: grpc.aio.ServicerContext[tools_pb2.GetPolicyRequest, tools_pb2.GetPolicyResponse],
    ) -> tools_pb2.GetPolicyResponse:
        """The policy of one tool."""
        return tools_pb2.GetPolicyResponse(policy=_policy_to_pb(await self.service.get_policy(request.tool_name)))

    async def SetPolicy(
        self,
        request: tools_pb2.SetPolicyRequest,
        context: grpc.aio.ServicerContext[tools_pb2.SetPolicyRequest, tools_pb2.SetPolicyResponse],
    ) -> tools_pb2.SetPolicyResponse:
        """Sets the policy of one tool (system admins)."""
        stored = await self.service.set_policy(identity(), _policy_from_pb(request.policy))
        return tools_pb2.SetPolicyResponse(policy=_policy_to_pb(stored))

    async def ListPolicies(
        self,
        request: tools_pb2.ListPoliciesRequest,
        context: grpc.aio.ServicerContext[tools_pb2.ListPoliciesRequest, tools_pb2.ListPoliciesResponse],
    ) -> tools_pb2.ListPoliciesResponse:
        """Every tool with its policy, or the embedded server's vetted seed."""
        policies = self.service.vetted_seed() if request.vetted_seed else await self.service.list_policies()
        return tools_pb2.ListPoliciesResponse(policies=[_policy_to_pb(p) for p in policies])
