"""Kakao operator and user APIs (DRF): health, callback tasks, prompts, task status, latest answers.

Every endpoint takes an organization API key or a staff JWT (runtime.auth.OPERATOR_AUTHENTICATION).
Kakao users have no login of their own, so the "user" endpoints are read by the operator's systems.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from kakao import selectors, services
from kakao.models import CallbackTask
from kakao.responses import response_build
from mejai.errors import ApiError
from runtime import apis as runtime_apis
from runtime.auth import OPERATOR_AUTHENTICATION, HasOrganization
from runtime.http import ERROR_SCHEMA, JsonErrorsMixin
from runtime.services import turn_payload


class OperatorApi(JsonErrorsMixin, APIView):
    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]


class CallbackTaskOutput(serializers.ModelSerializer):
    turn_status = serializers.CharField(source="turn.status")
    session_id = serializers.UUIDField(source="turn.session_id")
    bot_id = serializers.CharField(source="bot.bot_id")
    tokens_in = serializers.IntegerField(source="turn.tokens_in", allow_null=True)
    tokens_out = serializers.IntegerField(source="turn.tokens_out", allow_null=True)
    model = serializers.CharField(source="turn.model")
    latency_ms = serializers.IntegerField(source="turn.latency_ms", allow_null=True)

    class Meta:
        model = CallbackTask
        fields = ["id", "mode", "status", "attempts", "bot_id", "turn_id", "turn_status", "session_id", "received_at",
                  "deadline", "posted_at", "completed_at", "response_kind", "http_status", "kakao_task_id",
                  "kakao_status", "kakao_message", "error_code", "last_error", "held_delivered_by",
                  "tokens_in", "tokens_out", "model", "latency_ms"]


class HealthApi(OperatorApi):
    """Database, broker, workers, queue depth and the callback success rate of the last 24 hours."""

    @extend_schema(operation_id="kakao_admin_health", responses={200: dict, 503: dict})
    def get(self, request):
        body = selectors.kakao_health(organization=request.user.organization)
        return Response(body, status=503 if body["status"] == "unavailable" else 200)


class CallbackTaskListApi(JsonErrorsMixin, ListAPIView):
    """Callback tasks, newest first; `?status=failed` (comma-separated allowed), paginated with limit/offset."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]
    serializer_class = CallbackTaskOutput

    @extend_schema(operation_id="kakao_admin_ai_tasks",
                   parameters=[OpenApiParameter("status", str, description="pending, processing, completed, failed, expired, held")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.callback_tasks_for_org(organization=self.request.user.organization,
                                                status=self.request.query_params.get("status"))


class CallbackTaskRetryApi(OperatorApi):
    """Queue a failed delivery again while its callback token is still usable; otherwise 409."""

    @extend_schema(operation_id="kakao_admin_ai_task_retry", request=None,
                   responses={202: CallbackTaskOutput, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA, 503: ERROR_SCHEMA})
    def post(self, request, task_id):
        task = selectors.callback_task_get_for_org(organization=request.user.organization, task_id=task_id)
        task = services.callback_task_retry(task=task)
        return Response(CallbackTaskOutput(task).data, status=status.HTTP_202_ACCEPTED)


# The prompt APIs are the runtime's (one implementation), under Kakao's paths and operation ids.

@extend_schema_view(get=extend_schema(operation_id="kakao_admin_prompts"),
                    post=extend_schema(operation_id="kakao_admin_prompt_create"))
class PromptListApi(runtime_apis.PromptListApi):
    pass


@extend_schema_view(get=extend_schema(operation_id="kakao_admin_prompt"))
class PromptDetailApi(runtime_apis.PromptDetailApi):
    pass


@extend_schema_view(post=extend_schema(operation_id="kakao_admin_prompt_activate"))
class PromptActivateApi(runtime_apis.PromptVersionActivateApi):
    pass


class AiStatusApi(OperatorApi):
    """Where an answer stands: the task's status and, once answered, the answer in Kakao's format."""

    @extend_schema(operation_id="kakao_user_ai_status", responses={200: dict, 404: ERROR_SCHEMA})
    def get(self, request, task_id):
        task = selectors.callback_task_get_for_org(organization=request.user.organization, task_id=task_id)
        turn = task.turn
        body = {
            "task_id": str(task.pk), "status": task.status, "mode": task.mode, "attempts": task.attempts,
            "turn_id": str(turn.pk), "turn_status": turn.status, "session_id": str(turn.session_id),
            "answer_ready": turn.status == turn.Status.COMPLETED, "delivered": task.status == CallbackTask.Status.COMPLETED,
            "received_at": task.received_at, "deadline": task.deadline, "posted_at": task.posted_at,
            "kakao_status": task.kakao_status or None, "error_code": task.error_code or None,
        }
        if turn.status == turn.Status.COMPLETED:
            payload = turn_payload(turn)
            body["answer"] = payload
            body["kakao"] = response_build([payload["message"]], quick_replies=payload["quick_replies"])
        return Response(body)


class LatestAiResponseApi(OperatorApi):
    """The latest answered turn of a Kakao conversation, as the standard payload and in Kakao's format."""

    @extend_schema(operation_id="kakao_user_latest_ai_response", responses={200: dict, 404: ERROR_SCHEMA})
    def get(self, request, session_id):
        session = selectors.kakao_session_get_for_org(organization=request.user.organization, session_id=session_id)
        turn = selectors.session_latest_answer(session=session)
        if turn is None:
            raise ApiError("no_answer_yet", "This conversation has no answer yet.", 404)
        payload = turn_payload(turn)
        return Response({"answer": payload, "kakao": response_build([payload["message"]],
                                                                   quick_replies=payload["quick_replies"])})
