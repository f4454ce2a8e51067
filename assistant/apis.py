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

    class ReportInputSerializer(serializers.Serializer):
        content = serializers.CharField(max_length=reports.MAX_REPORT_CHARS, trim_whitespace=True,
                                        help_text="The report, markdown (shown with the safe renderer).")
        client_id = serializers.CharField(required=False, max_length=64,
                                          help_text="The client_id to report to (exactly one of client_id and user).")
        user = serializers.CharField(required=False, max_length=150,
                                     help_text="The username of a member of the key's organization.")
        task_id = serializers.CharField(required=False, max_length=100, allow_blank=True,
                                        help_text="Your own id of the finished job, sent as the frame's task_id.")

    class ReportOutputSerializer(serializers.Serializer):
        report_id = serializers.IntegerField()
        client_id = serializers.CharField(allow_null=True)
        status = serializers.CharField()

    @extend_schema(request=ReportInputSerializer, responses={201: ReportOutputSerializer})
    def post(self, request):
        data = self.ReportInputSerializer(data=json_object(request))
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
        return Response(self.ReportOutputSerializer(body).data, status=status.HTTP_201_CREATED)


class StatusApi(JsonErrorsMixin, APIView):
    """The assistant's figures for the caller's organization (open sockets of this process, clients,
    queued and running turns, delegated tasks, pending reports)."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]

    class StatusOutputSerializer(serializers.Serializer):
        sockets_this_process = serializers.IntegerField()
        clients = serializers.IntegerField()
        clients_seen_last_hour = serializers.IntegerField()
        turns = serializers.DictField(child=serializers.IntegerField())
        tasks = serializers.DictField(child=serializers.IntegerField())
        reports_pending = serializers.IntegerField()

    @extend_schema(responses={200: StatusOutputSerializer})
    def get(self, request):
        return Response(selectors.assistant_status(organization=request.user.organization))
