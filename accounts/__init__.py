"""Accounts and sessions: WeChat login, tokens, invitations, staff and patient binding."""
