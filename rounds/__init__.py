"""Rounds: a chat-ops bot for hospital IT operations and maintenance teams."""

__version__ = "0.1.0"
