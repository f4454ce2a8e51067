"""OpenAPI description of the organization API key (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "runtime.auth.ApiKeyAuthentication"
    name = "OrganizationApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "mj_sk_…",
                "description": "Organization API key, created in the admin (shown once)."}


class StaffJWTScheme(OpenApiAuthenticationExtension):
    target_class = "runtime.auth.StaffJWTAuthentication"
    name = "StaffJWT"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "Staff access token from POST /api/auth/token (staff users with an organization)."}
