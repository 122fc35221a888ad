"""Redaction of secret values from text, including secrets that contain one another."""
from provision.secrets import Secret, redactor


def test_a_secret_containing_another_is_redacted_whole():
    redact = redactor([Secret("short", "zz"), Secret("long", "azzb")])
    assert redact("key=azzb and zz") == "key=*** and ***"


def test_empty_secrets_redact_nothing():
    assert redactor([Secret("unset"), Secret("k", "v4lue")])("a v4lue b") == "a *** b"
