"""Assistant APIs: external systems report completions (`POST /api/assistant/reports`), and the
assistant's figures for operators (`GET /api/assistant/status`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant import reports, selectors
from runtime.auth import OPERATOR_AUTHENTICATION, ApiKeyAuthentication, HasOrganization
from runtime.http import JsonErrorsMixin, LimitedJSONParser, TextField, json_object


class ReportCreateApi(JsonErrorsMixin, APIView):
    """Send an `auto_report` to a client_id, or to a user (by username) of the key's organization.

    Delivered at once when the client is connected, else on its next connect or resume, once.
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]
    parser_classes = [LimitedJSONParser]

    class ReportInputSerializer(serializers.Serializer):
        content = TextField(max_length=reports.MAX_REPORT_CHARS, trim_whitespace=True,
                                        help_text="The report, markdown (shown with the safe renderer).")
        client_id = TextField(required=False, max_length=64,
                                          help_text="The client_id to report to (exactly one of client_id and user).")
        user = TextField(required=False, max_length=150,
                                     help_text="The username of a member of the key's organization.")
        task_id = TextField(required=False, max_length=100, allow_blank=True,
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
        client, user = reports.report_recipient_resolve(organization=organization, client_id=values.get("client_id"),
                                                        username=values.get("user"))
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
