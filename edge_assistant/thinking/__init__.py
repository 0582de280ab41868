"""Thinking: prompts, the chat session, the LLM backends and what a reply may say."""
