"""Signed slip tokens, QR rendering and scanned-code parsing."""
