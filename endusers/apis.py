"""Contacts API: end users, their memories, merge and erasure (organization API key or staff JWT)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from endusers import selectors, services
from endusers.models import EndUser, Identity, Memory
from mejai.errors import ApiError
from runtime.auth import OPERATOR_AUTHENTICATION, HasOrganization
from runtime.http import ERROR_SCHEMA, JsonErrorsMixin


class IdentityOutput(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["kind", "value", "verified", "created_at"]


class ContactOutput(serializers.ModelSerializer):
    identities = IdentityOutput(many=True)
    name = serializers.SerializerMethodField()

    class Meta:
        model = EndUser
        fields = ["id", "display_name", "name", "identities", "created_at", "last_seen_at", "merged_into", "erased_at"]

    def get_name(self, obj) -> str | None:
        return obj.profile.get("name") or obj.display_name or None


class MemoryOutput(serializers.ModelSerializer):
    class Meta:
        model = Memory
        fields = ["id", "text", "kind", "key", "source", "source_turn", "created_at", "updated_at"]


class MemoryHitOutput(MemoryOutput):
    score = serializers.FloatField()

    class Meta(MemoryOutput.Meta):
        fields = [*MemoryOutput.Meta.fields, "score"]


class ContactSessionOutput(serializers.Serializer):
    session_id = serializers.UUIDField(source="session.id")
    channel = serializers.CharField()
    agent = serializers.CharField(source="session.agent.name")
    status = serializers.CharField(source="session.status")
    message_count = serializers.IntegerField()
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


class ContactTurnOutput(serializers.Serializer):
    id = serializers.UUIDField()
    session_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    user_text = serializers.CharField()
    reply_text = serializers.CharField()
    status = serializers.CharField()
    handled_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class ContactDetailOutput(serializers.Serializer):
    id = serializers.IntegerField(source="end_user.id")
    display_name = serializers.CharField(source="end_user.display_name")
    profile = serializers.JSONField(source="end_user.profile")
    created_at = serializers.DateTimeField(source="end_user.created_at")
    last_seen_at = serializers.DateTimeField(source="end_user.last_seen_at")
    merged_into = serializers.IntegerField(source="end_user.merged_into_id", allow_null=True)
    erased_at = serializers.DateTimeField(source="end_user.erased_at", allow_null=True)
    identities = IdentityOutput(many=True)
    sessions = ContactSessionOutput(many=True)
    memories = MemoryOutput(many=True)
    recent_turns = ContactTurnOutput(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())


class CappedCountPagination(LimitOffsetPagination):
    """limit/offset pages whose `count` stops at COUNT_CAP (`count_capped: true` then): counting 100k+
    contacts on every page costs more than the page itself; past the cap, narrow the list with `q`."""

    COUNT_CAP = 10_000
    count_capped = False

    def get_count(self, queryset) -> int:
        counted = queryset.order_by().values("pk")[: self.COUNT_CAP + 1].count()
        self.count_capped = counted > self.COUNT_CAP
        return min(counted, self.COUNT_CAP)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_capped"] = self.count_capped
        return response


class OperatorApi(JsonErrorsMixin, APIView):
    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]

    def contact(self, contact_id) -> EndUser:
        return selectors.contact_get(organization=self.request.user.organization, contact_id=contact_id)

    def paginate(self, queryset, serializer_class):
        paginator = CappedCountPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


class ContactListApi(OperatorApi):
    class ContactInput(serializers.Serializer):
        external_id = serializers.CharField(required=False, max_length=255)
        email = serializers.CharField(required=False, max_length=320)
        phone = serializers.CharField(required=False, max_length=40)
        display_name = serializers.CharField(required=False, allow_blank=True, max_length=100)

    @extend_schema(
        parameters=[OpenApiParameter("q", str, description="name, email, phone or any identity value"),
                    OpenApiParameter("email", str), OpenApiParameter("phone", str),
                    OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses={200: ContactOutput(many=True), 400: ERROR_SCHEMA},
    )
    def get(self, request):
        """List and search the organization's contacts (end users), newest activity first."""
        queryset = selectors.contacts_list(
            organization=request.user.organization, q=request.query_params.get("q", ""),
            email=request.query_params.get("email"), phone=request.query_params.get("phone"),
        )
        return self.paginate(queryset, ContactOutput)

    InputSerializer = ContactInput

    @extend_schema(request=ContactInput, responses={200: ContactOutput, 201: ContactOutput, 400: ERROR_SCHEMA,
                                                       409: ERROR_SCHEMA})
    def post(self, request):
        """Find or create the contact holding these identities; values sent by your server count as verified."""
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "The body must be a JSON object.", 400)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        end_user, created = services.contact_upsert(organization=request.user.organization, **data.validated_data)
        end_user = EndUser.objects.prefetch_related("identities").get(pk=end_user.pk)
        return Response(ContactOutput(end_user).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ContactDetailApi(OperatorApi):
    @extend_schema(responses={200: ContactDetailOutput, 404: ERROR_SCHEMA})
    def get(self, request, contact_id):
        """One contact: identities, sessions on every channel, memories, recent turns."""
        detail = selectors.contact_detail(end_user=self.contact(contact_id))
        return Response(ContactDetailOutput(detail).data)


class ContactMemoriesApi(OperatorApi):
    class MemoryInput(serializers.Serializer):
        text = serializers.JSONField()  # validated by the service, so every path gives the same errors
        kind = serializers.ChoiceField(choices=Memory.Kind.choices, required=False, default=Memory.Kind.FACT)

    @extend_schema(parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
                   responses={200: MemoryOutput(many=True), 404: ERROR_SCHEMA})
    def get(self, request, contact_id):
        """The contact's active memories, newest first."""
        return self.paginate(selectors.memories_active(end_user=self.contact(contact_id)), MemoryOutput)

    InputSerializer = MemoryInput

    @extend_schema(request=MemoryInput, responses={201: MemoryOutput, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA})
    def post(self, request, contact_id):
        """Add a memory to the contact."""
        end_user = self.contact(contact_id)
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "The body must be a JSON object.", 400)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        memory = services.memory_add(end_user=end_user, text=data.validated_data["text"], kind=data.validated_data["kind"],
                                     source=Memory.Source.API, actor=request.user.label)
        return Response(MemoryOutput(memory).data, status=status.HTTP_201_CREATED)


class ContactMemoryApi(OperatorApi):
    @extend_schema(responses={204: None, 404: ERROR_SCHEMA})
    def delete(self, request, contact_id, memory_id):
        """Delete one of the contact's memories (kept in its history)."""
        services.memory_forget(end_user=self.contact(contact_id), memory_id=memory_id, actor=request.user.label)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ContactMemorySearchApi(OperatorApi):
    @extend_schema(parameters=[OpenApiParameter("q", str, required=True), OpenApiParameter("limit", int)],
                   responses={200: MemoryHitOutput(many=True), 400: ERROR_SCHEMA, 404: ERROR_SCHEMA})
    def get(self, request, contact_id):
        """The contact's memories ranked for a query (full-text + trigram similarity)."""
        end_user = self.contact(contact_id)
        try:
            limit = min(max(int(request.query_params.get("limit", 10)), 1), 50)
        except ValueError:
            raise ApiError("invalid", "limit must be a number.", 400, field="limit") from None
        hits = selectors.memory_search(end_user=end_user, query=request.query_params.get("q", ""), limit=limit)
        return Response({"results": MemoryHitOutput(hits, many=True).data})


class ContactMergeApi(OperatorApi):
    class MergeInput(serializers.Serializer):
        into = serializers.IntegerField(min_value=1, max_value=selectors.MAX_ID,
                                        help_text="id of the contact that keeps everything")
        dry_run = serializers.BooleanField(
            default=False, help_text="true: only return the plan (direction, identities moving and detached, "
                                     "warnings) without merging")

    InputSerializer = MergeInput

    @extend_schema(request=MergeInput, responses={200: ContactOutput, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA,
                                                  409: ERROR_SCHEMA})
    def post(self, request, contact_id):
        """Merge this contact into another one: identities, sessions, timeline and memories move.

        Trust rule: into a verified contact, this contact's visitor keys and unverified identities
        do not follow (they stay with a new anonymous contact); a verified contact cannot be merged
        into an unverified one (409 `merge_into_unverified`). The answer carries `merge`: the plan
        that was carried out (with `dry_run`, only the plan).
        """
        source = self.contact(contact_id)
        data = self.InputSerializer(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        # Another organization's contact is "not found", like any id that is not yours.
        target = EndUser.objects.filter(pk=data.validated_data["into"], organization=source.organization_id).first()
        if target is None:
            raise ApiError("contact_not_found", "Contact not found.", 404, field="into")
        plan = services.merge_plan(source=source, target=target).as_dict()
        if data.validated_data["dry_run"]:
            return Response({"merge": plan})
        target = services.end_user_merge(source=source, target=target, actor=request.user.label)
        contact = ContactOutput(EndUser.objects.prefetch_related("identities").get(pk=target.pk)).data
        return Response({**contact, "merge": plan})


class ContactEraseApi(OperatorApi):
    @extend_schema(request=None, responses={200: None, 404: ERROR_SCHEMA})
    def post(self, request, contact_id):
        """Erase the contact's personal data (identities, memories, message texts); counts and an audit stay."""
        with transaction.atomic():
            record = services.end_user_erase(end_user=self.contact(contact_id), actor=request.user.label)
        return Response({"erased": record.end_user_id_erased, "counts": record.counts, "at": record.created_at})
