"""Admission slips (DESIGN §8 "slips"): issue and revoke with the referral, signed tokens, check-in once,
no-show expiry. Tokens and images are made by ``qr``; this package holds the rules and the state.

Modules: ``lifecycle`` (issue/revoke/reissue, called by referral commands), ``keys`` (signing keys, JWKS),
``tokens`` (a slip's token), ``access`` (who sees a slip), ``checkin`` (the admission desk), ``noshow`` and
``jobs`` (the expiry timer), ``views`` (what callers are shown), ``images`` (QR and mini-program code), ``demo``."""
