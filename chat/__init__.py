"""Conversations of consultations and ward rounds: messages, read marks, and the realtime hub that delivers
them over WebSockets (fanned out between `web` processes over the KV store's pub/sub)."""
