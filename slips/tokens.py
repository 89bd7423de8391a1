"""A slip's token: signed on demand with the slip's own key (deterministic, so the same token every time)."""

from __future__ import annotations

from models import Slip
from qr.slip_token import sign
from security.crypto import PersonalDataCipher
from slips import keys


async def token_for(slip: Slip, institution_code: str, cipher: PersonalDataCipher) -> str:
    """The token for ``slip`` at its target institution; binds the slip to a key on first signing if it was
    issued before the installation's first key existed."""
    if not slip.kid:
        kid = await keys.signing_kid(cipher)
        await Slip.filter(id=slip.id, kid="").update(kid=kid)
        # Another request may have bound it a moment earlier, possibly to another key: the stored kid wins.
        slip.kid = (await Slip.get(id=slip.id)).kid
    private = await keys.private_key(cipher, slip.kid)
    return sign(private, slip.kid, code=slip.code, institution=institution_code,
                expires_at=int(slip.expires_at.timestamp()))
