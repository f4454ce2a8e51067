"""The project's URLs plus one plain (non-DRF) Django view that needs the database (overload tests)."""

from django.http import HttpResponse
from django.urls import path

from mejai.urls import urlpatterns as project_urlpatterns


def plain_page(request):
    from runtime.models import Organization

    return HttpResponse(f"<p>{Organization.objects.count()}</p>")


urlpatterns = [path("plain-db-page", plain_page), *project_urlpatterns]
handler500 = "mejai.views.server_error"
