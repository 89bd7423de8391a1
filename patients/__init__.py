"""Patients as doctors meet them: resolving a scanned code through the HIS (scan) and the patient's own QR
card (card)."""
