"""The seed guide's tests, with only their import lines adapted to this package."""

from engine import ExecutionMode, ProviderError


def test_fallback_integration():
    """Test that LLMManager uses fallback correctly."""
    from unittest.mock import Mock, patch

    from engine import LLMManager

    manager = LLMManager()

    # Mock first provider to fail, second to succeed
    with patch.object(manager, "get_provider") as mock_get_provider:
        provider1 = Mock()
        provider1.generate_response.side_effect = ProviderError("Rate limited", code="429")

        provider2 = Mock()
        provider2.generate_response.return_value = "4"
        provider2.model = "gpt-4"

        mock_get_provider.side_effect = [provider1, provider2]

        response, meta = manager.generate_response("What is 2+2?")

        # Should have fallen back to second provider
        assert meta.provider_attempts[0]["error_category"] == "provider_error"
        assert meta.provider == "openai"  # Second in chain
        assert meta.fallback_used is True
        assert response == "4"


def test_backward_compatible_calls_from_the_guide():
    """The guide's 'Existing Code Continues to Work' snippets, against registered providers."""
    from unittest.mock import Mock

    from engine import LLMManager

    claude = Mock()
    claude.generate_response.return_value = "4"
    claude.model = "claude-sonnet"
    deepseek = Mock()
    deepseek.generate_response.return_value = "four"
    llm_manager = LLMManager(config={"providers": {"claude": claude, "deepseek": deepseek}})

    response, meta = llm_manager.generate_response("What is 2+2?")
    assert response == "four" and meta.provider == "deepseek"

    response, meta = llm_manager.generate_response("What is 2+2?", provider="claude")
    assert response == "4" and meta.provider == "claude" and meta.model == "claude-sonnet"
    assert len(meta.provider_attempts) == 1

    response, meta = llm_manager.generate_response("What is 2+2?", mode=ExecutionMode.DIRECT)
    assert meta.provider_attempts and not meta.fallback_used
