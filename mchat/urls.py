"""Mattermost URLs: slash commands, health, operator status and mapping APIs."""

from django.urls import path

from mchat import apis, views

urlpatterns = [
    path("mchat/commands", views.commands, name="mchat-commands"),
    path("mchat/health", views.health, name="mchat-health"),
    path("api/mchat/status", apis.StatusApi.as_view(), name="mchat-status"),
    path("api/mchat/mappings/channels", apis.ChannelMappingListApi.as_view(), name="mchat-channel-mappings"),
    path("api/mchat/mappings/users", apis.UserMappingListApi.as_view(), name="mchat-user-mappings"),
    path("api/mchat/mappings/users/link", apis.UserMappingLinkApi.as_view(), name="mchat-user-mapping-link"),
]
