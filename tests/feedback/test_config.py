"""Engine 2's settings: derived environment variables, validation, and the signing key kept out of them."""

from __future__ import annotations

import pytest

from stream.contract.config import ConfigError, FeedbackSettings, Settings
from tests.support.cli import vt


def test_feedback_settings_come_from_the_environment_and_are_validated() -> None:
    s = Settings.load(environ={"VT_FEEDBACK_MIN_SUPPORT": "5", "VT_FEEDBACK_LLM_ENABLED": "true", "VT_FEEDBACK_HELDOUT_FRACTION": "0.3"})
    assert (s.feedback.min_support, s.feedback.llm_enabled, s.feedback.heldout_fraction) == (5, True, 0.3)
    assert Settings.load({"feedback.debounce_s": "0.5"}).feedback.debounce_s == 0.5
    with pytest.raises(ConfigError, match="feedback.min_support: must be >= 1"):
        Settings.load(environ={"VT_FEEDBACK_MIN_SUPPORT": "0"})
    with pytest.raises(ConfigError, match="feedback.max_delay_s"):
        FeedbackSettings(debounce_s=5, max_delay_s=1).validate()
    with pytest.raises(ConfigError, match="feedback.heldout_fraction"):
        Settings.load(environ={"VT_FEEDBACK_HELDOUT_FRACTION": "1.5"})


def test_the_signing_key_is_not_a_setting_and_is_never_printed() -> None:
    res = vt("config", env={"VT_HOOK_SIGNING_KEY": "super-secret-signing-key"})
    assert res.returncode == 0
    assert "VT_FEEDBACK_MIN_SUPPORT" in res.stdout
    assert "super-secret-signing-key" not in res.stdout + res.stderr
