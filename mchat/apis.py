"""Mattermost operator APIs (DRF): worker status per bot, channel and user mappings, the manual user link.

Every endpoint takes an organization API key or a staff JWT (runtime.auth.OPERATOR_AUTHENTICATION) and sees
only its organization's bots. Mapping changes are audited (MappingAudit).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from endusers.models import EndUser
from mchat import selectors, services
from mchat.models import ChannelMapping, UserMapping
from mejai.errors import ApiError
from runtime.auth import OPERATOR_AUTHENTICATION, HasOrganization
from runtime.http import ERROR_SCHEMA, JsonErrorsMixin

BOT_PARAMETER = OpenApiParameter("bot_id", int, description="Only this bot's mappings.")


class OperatorApi(JsonErrorsMixin, APIView):
    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]


def _object(request) -> dict:
    if not isinstance(request.data, dict):
        raise ApiError("invalid", "The body must be a JSON object.", 400)
    return request.data


class StatusApi(OperatorApi):
    """Per bot: state (websocket / polling / down / unhealthy / stopped), last event age, last seq, reconnects,
    outbox depth and oldest item age, auth ok, worker heartbeat."""

    @extend_schema(operation_id="mchat_status", responses={200: dict})
    def get(self, request):
        return Response({"bots": selectors.bots_status(organization=request.user.organization)})


class ChannelMappingOutput(serializers.ModelSerializer):
    class Meta:
        model = ChannelMapping
        fields = ["id", "bot_id", "mchat_channel_id", "name", "display_name", "team_id", "channel_type", "auto_reply",
                  "session_id", "created_at", "updated_at"]


class UserMappingOutput(serializers.ModelSerializer):
    class Meta:
        model = UserMapping
        fields = ["id", "bot_id", "mchat_user_id", "username", "email_verified", "auth_service", "end_user_id",
                  "linked_by", "created_at", "updated_at"]


class ChannelMappingListApi(JsonErrorsMixin, ListAPIView):
    """GET: the organization's channel mappings (?bot_id=). POST: create or change one (auto-reply), audited."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]
    serializer_class = ChannelMappingOutput

    class ChannelMappingInput(serializers.Serializer):
        bot_id = serializers.IntegerField(help_text="The organization's Mattermost bot (its id in mejai).")
        mchat_channel_id = serializers.RegexField(r"^[a-z0-9]{26}$",
                                                  help_text="The Mattermost channel id (26 lowercase letters/digits).")
        auto_reply = serializers.BooleanField(required=False,
                                              help_text="Answer every post of the channel, not only mentions.")
        name = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                     help_text="The channel's name, for operators.")
        channel_type = serializers.ChoiceField(choices=ChannelMapping.Type.choices, required=False,
                                               help_text="O public, P private, D direct, G group (Mattermost's codes).")

    def get_queryset(self):
        return selectors.channel_mappings_for_org(organization=self.request.user.organization,
                                                  bot_id=self.request.query_params.get("bot_id"))

    @extend_schema(operation_id="mchat_channel_mappings", parameters=[BOT_PARAMETER])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(operation_id="mchat_channel_mapping_save", request=ChannelMappingInput,
                   responses={200: ChannelMappingOutput, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA})
    def post(self, request):
        data = self.ChannelMappingInput(data=_object(request))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        bot = selectors.bot_get_for_org(organization=request.user.organization, bot_id=values["bot_id"])
        mapping = services.channel_mapping_update(
            bot=bot, mchat_channel_id=values["mchat_channel_id"], actor=request.user.label,
            auto_reply=values.get("auto_reply"), name=values.get("name"), channel_type=values.get("channel_type"))
        return Response(ChannelMappingOutput(mapping).data)


class UserMappingListApi(JsonErrorsMixin, ListAPIView):
    """The organization's user mappings (?bot_id=), with how each was linked."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]
    serializer_class = UserMappingOutput

    def get_queryset(self):
        return selectors.user_mappings_for_org(organization=self.request.user.organization,
                                               bot_id=self.request.query_params.get("bot_id"))

    @extend_schema(operation_id="mchat_user_mappings", parameters=[BOT_PARAMETER])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class UserMappingLinkApi(OperatorApi):
    """Link a Mattermost user to an end user of the organization (manual; pinned to the user id; audited)."""

    class UserLinkInput(serializers.Serializer):
        bot_id = serializers.IntegerField(help_text="The organization's Mattermost bot (its id in mejai).")
        mchat_user_id = serializers.RegexField(r"^[a-z0-9]{26}$",
                                               help_text="The Mattermost user id (26 lowercase letters/digits).")
        end_user_id = serializers.IntegerField(help_text="The end user (contact) of the organization to link to.")

    @extend_schema(operation_id="mchat_user_mapping_link", request=UserLinkInput,
                   responses={200: UserMappingOutput, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA})
    def post(self, request):
        data = self.UserLinkInput(data=_object(request))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        organization = request.user.organization
        bot = selectors.bot_get_for_org(organization=organization, bot_id=values["bot_id"])
        end_user = EndUser.objects.filter(pk=values["end_user_id"], organization=organization).first()
        if end_user is None:
            raise ApiError("not_found", "End user not found.", 404, field="end_user_id")
        mapping = services.user_mapping_link(bot=bot, mchat_user_id=values["mchat_user_id"], end_user=end_user,
                                             actor=request.user.label)
        return Response(UserMappingOutput(mapping).data, status=status.HTTP_200_OK)
