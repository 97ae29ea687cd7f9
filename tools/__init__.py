"""Typed tools the agents call, and the knowledge and experience stores (`tools.memory`)."""
