"""The domain: hospital IT service management, one module per process.

Functions take the session first, write an audit record for every state change and every
refused attempt, and record notifications in the outbox; they never call a chat platform.
"""
