"""Transactional outbox and its dispatcher (issue 5)."""
