"""Issue 10 (Low): brute force on the admin login and /api/auth/token is locked out; standard password rules."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def staff(django_user_model, settings):
    settings.AXES_FAILURE_LIMIT = 3
    return django_user_model.objects.create_user("operator", "op@example.com", PASSWORD, is_staff=True)


def _admin_login(client, password, **extra):
    return client.post("/admin/login/?next=/admin/", {"username": "operator", "password": password}, **extra)


def test_admin_login_locks_after_repeated_failures(client, staff):
    for _ in range(2):
        assert _admin_login(client, "wrong").status_code == 200  # the form again
    assert _admin_login(client, "wrong").status_code == 429  # the third failure locks
    locked = _admin_login(client, PASSWORD)
    assert locked.status_code == 429 and "잠겼습니다" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by this one's failures.
    assert _admin_login(client, PASSWORD, REMOTE_ADDR="198.51.100.9").status_code == 302


def test_rotating_usernames_from_one_address_is_locked_too(client, staff):
    for name in ("a", "b", "c"):
        client.post("/admin/login/", {"username": name, "password": "x"})
    assert _admin_login(client, PASSWORD).status_code == 429


def test_token_endpoint_locks_after_repeated_failures(client, staff):
    url = "/api/auth/token"
    for _ in range(3):
        response = client.post(url, {"username": "operator", "password": "wrong"}, content_type="application/json")
        assert response.status_code in (401, 429)
    locked = client.post(url, {"username": "operator", "password": PASSWORD}, content_type="application/json")
    assert locked.status_code == 429, locked.content
    body = locked.json()
    assert body["error"]["code"] == "login_locked" and "access" not in body
    ok = client.post(url, {"username": "operator", "password": PASSWORD}, content_type="application/json",
                     REMOTE_ADDR="198.51.100.9")
    assert ok.status_code == 200 and "access" in ok.json()


@pytest.mark.parametrize("password", ["1234", "password123", "short", "12345678901", "operator2026"])
def test_weak_passwords_are_refused(django_user_model, password):
    user = django_user_model(username="operator2026", email="operator@example.com")
    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_a_strong_password_passes(django_user_model):
    validate_password("누리-바람-Tide-4417", django_user_model(username="x"))
