"""Contacts API routes (mounted at the site root)."""

from django.urls import path

from endusers import apis

urlpatterns = [
    path("api/contacts", apis.ContactListApi.as_view(), name="contacts"),
    path("api/contacts/<str:contact_id>", apis.ContactDetailApi.as_view(), name="contact-detail"),
    path("api/contacts/<str:contact_id>/memories", apis.ContactMemoriesApi.as_view(), name="contact-memories"),
    path("api/contacts/<str:contact_id>/memories/search", apis.ContactMemorySearchApi.as_view(), name="contact-memory-search"),
    path("api/contacts/<str:contact_id>/memories/<str:memory_id>", apis.ContactMemoryApi.as_view(), name="contact-memory"),
    path("api/contacts/<str:contact_id>/merge", apis.ContactMergeApi.as_view(), name="contact-merge"),
    path("api/contacts/<str:contact_id>/erase", apis.ContactEraseApi.as_view(), name="contact-erase"),
]
