"""Assistant APIs: external systems report completions (`POST /api/assistant/reports`), and the
assistant's figures for operators (`GET /api/assistant/status`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant import reports, selectors
from assistant.models import AssistantClient
from mejai.errors import ApiError
from runtime.auth import OPERATOR_AUTHENTICATION, ApiKeyAuthentication, HasOrganization
from runtime.http import JsonErrorsMixin, LimitedJSONParser, json_object
from runtime.models import Membership


class ReportCreateApi(JsonErrorsMixin, APIView):
    """Send an `auto_report` to a client_id, or to a user (by username) of the key's organization.

    Delivered at once when the client is connected, else on its next connect or resume, once.
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]
    parser_classes = [LimitedJSONParser]

    class InputSerializer(serializers.Serializer):
        content = serializers.CharField(max_length=reports.MAX_REPORT_CHARS, trim_whitespace=True)
        client_id = serializers.CharField(required=False, max_length=64)
        user = serializers.CharField(required=False, max_length=150)
        task_id = serializers.CharField(required=False, max_length=100, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        report_id = serializers.IntegerField()
        client_id = serializers.CharField(allow_null=True)
        status = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=json_object(request))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        organization = request.user.organization
        if bool(values.get("client_id")) == bool(values.get("user")):
            raise ApiError("invalid", "client_id와 user 중 하나만 주세요. (Give exactly one of client_id and user.)", 400)
        client = user = None
        if values.get("client_id"):
            # Another organization's client looks exactly like one that does not exist.
            client = AssistantClient.objects.filter(client_id=values["client_id"], organization=organization).first()
            if client is None:
                raise ApiError("not_found", "클라이언트를 찾을 수 없습니다. (Client not found.)", 404, field="client_id")
        else:
            membership = (Membership.objects.select_related("user")
                          .filter(organization=organization, user__username=values["user"]).first())
            if membership is None:
                raise ApiError("not_found", "사용자를 찾을 수 없습니다. (User not found.)", 404, field="user")
            user = membership.user
        report = reports.report_create(organization=organization, content=values["content"], client=client, user=user,
                                       external_task_id=values.get("task_id") or "")
        body = {"report_id": report.pk, "client_id": client.client_id if client else None, "status": "queued"}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class StatusApi(JsonErrorsMixin, APIView):
    """The assistant's figures for the caller's organization (open sockets of this process, clients,
    queued and running turns, delegated tasks, pending reports)."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]

    def get(self, request):
        return Response(selectors.assistant_status(organization=request.user.organization))
