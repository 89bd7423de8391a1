"""PersonalDataCipher: AES-256-GCM tokens and keyed lookup hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.crypto import DecryptionError, PersonalDataCipher, generate_key

DATA_KEY = bytes(range(32))
LOOKUP_KEY = bytes(range(32, 64))


@pytest.fixture
def cipher() -> PersonalDataCipher:
    return PersonalDataCipher(DATA_KEY, LOOKUP_KEY)


def _body(token: str) -> bytes:
    body = token.split(".", 1)[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _token(raw: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("plaintext", ["13812345678", "11010519491231002X", "张三明", "", "a" * 5000])
def test_round_trip(cipher, plaintext):
    assert cipher.decrypt(cipher.encrypt(plaintext)) == plaintext
    assert cipher.decrypt(cipher.encrypt(plaintext, "phone"), "phone") == plaintext


@given(st.text())
def test_round_trip_any_text(plaintext):
    cipher = PersonalDataCipher(DATA_KEY, LOOKUP_KEY)
    assert cipher.decrypt(cipher.encrypt(plaintext, "id_number"), "id_number") == plaintext


def test_token_is_versioned_compact_text(cipher):
    token = cipher.encrypt("13812345678")
    version, body = token.split(".")
    assert version == "v1"
    assert "=" not in body and set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # 12-byte nonce + 11 bytes of ciphertext + 16-byte tag, and the plaintext is not visible.
    assert len(_body(token)) == 12 + 11 + 16
    assert "13812345678" not in token


def test_every_encryption_uses_a_fresh_nonce(cipher):
    tokens = [cipher.encrypt("13812345678") for _ in range(50)]
    assert len(set(tokens)) == 50
    assert len({_body(t)[:12] for t in tokens}) == 50


def test_every_tampered_byte_is_detected(cipher):
    raw = _body(cipher.encrypt("11010519491231002X", "id_number"))
    for i in range(len(raw)):  # nonce, ciphertext and tag alike
        tampered = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:]
        with pytest.raises(DecryptionError, match="failed authentication"):
            cipher.decrypt(_token(tampered), "id_number")


@pytest.mark.parametrize("token, message", [
    ("", "no version prefix"),
    ("13812345678", "no version prefix"),
    ("v2.AAAA", "unsupported token version"),
    ("v1.", "truncated"),
    ("v1.AAAA", "truncated"),
    ("v1.abc!def+ghi/jklmnopqrstuvwxyz0123456789ABCDEFG", "not base64url"),
    ("v1.A", "not base64url"),
    ("v1.号码", "not base64url"),
])
def test_malformed_tokens_are_rejected(cipher, token, message):
    with pytest.raises(DecryptionError, match=message):
        cipher.decrypt(token)


def test_truncated_and_extended_tokens_are_rejected(cipher):
    raw = _body(cipher.encrypt("13812345678"))
    for broken in (raw[:-1], raw + b"\x00", raw[:12] + raw[13:]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(_token(broken))


def test_non_string_token_is_rejected(cipher):
    with pytest.raises(DecryptionError):
        cipher.decrypt(b"v1.AAAA")  # type: ignore[arg-type]


def test_only_text_is_encrypted(cipher):
    with pytest.raises(TypeError, match="plaintext must be str"):
        cipher.encrypt(13812345678)  # type: ignore[arg-type]


def test_wrong_data_key_is_rejected(cipher):
    token = cipher.encrypt("13812345678")
    other = PersonalDataCipher(bytes(reversed(DATA_KEY)), LOOKUP_KEY)
    with pytest.raises(DecryptionError, match="wrong key"):
        other.decrypt(token)


def test_context_binds_a_token_to_its_field(cipher):
    token = cipher.encrypt("13812345678", "phone")
    for wrong in ("id_number", "", "Phone"):
        with pytest.raises(DecryptionError):
            cipher.decrypt(token, wrong)
    assert cipher.decrypt(token, "phone") == "13812345678"


@pytest.mark.parametrize("data_key, lookup_key", [
    (b"short", LOOKUP_KEY),
    (DATA_KEY, bytes(33)),
    (DATA_KEY.hex(), LOOKUP_KEY),
    (DATA_KEY, DATA_KEY),
])
def test_bad_keys_are_refused(data_key, lookup_key):
    with pytest.raises(ValueError):
        PersonalDataCipher(data_key, lookup_key)


def test_repr_shows_no_key_material(cipher):
    assert repr(cipher) == "PersonalDataCipher(v1)"


def test_lookup_hash_is_pinned(cipher):
    # Stored hashes depend on this exact scheme: HMAC-SHA256(lookup key, kind NUL normalised value), hex.
    expected = hmac.new(LOOKUP_KEY, b"id_number\x0011010519491231002X", hashlib.sha256).hexdigest()
    assert cipher.lookup_hash("id_number", "11010519491231002X") == expected
    assert expected == "4c148825dedc4020a1b1a05451349ae5ce048b0768063badd50d9efb4f70dd03"
    assert cipher.lookup_hash("phone", "13812345678") == (
        "f93f3e9223777edeaaa2ccb123705ca5a74ef17c867cf016a221ef2d9933f0d8")


@pytest.mark.parametrize("kind, spellings", [
    ("id_number", ["11010519491231002X", "11010519491231002x", " 110105 19491231 002X ",
                   "１１０１０５１９４９１２３１００２Ｘ"]),
    ("phone", ["13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "+8613812345678",
               "8613812345678", "0086-138-1234-5678", "(138) 1234.5678"]),
])
def test_lookup_hash_normalises_spellings(cipher, kind, spellings):
    hashes = {cipher.lookup_hash(kind, spelling) for spelling in spellings}
    assert len(hashes) == 1
    (value,) = hashes
    assert len(value) == 64 and int(value, 16) >= 0


def test_lookup_hash_distinguishes_values(cipher):
    assert cipher.lookup_hash("phone", "13812345678") != cipher.lookup_hash("phone", "13812345679")


def test_lookup_hash_is_separated_by_kind(cipher):
    value = "13812345678"
    assert cipher.lookup_hash("phone", value) != cipher.lookup_hash("id_number", value)


def test_lookup_hash_depends_on_the_lookup_key_only(cipher):
    other_lookup = PersonalDataCipher(DATA_KEY, bytes(reversed(LOOKUP_KEY)))
    other_data = PersonalDataCipher(bytes(reversed(DATA_KEY)), LOOKUP_KEY)
    value = "11010519491231002X"
    assert other_lookup.lookup_hash("id_number", value) != cipher.lookup_hash("id_number", value)
    assert other_data.lookup_hash("id_number", value) == cipher.lookup_hash("id_number", value)


def test_lookup_hash_refuses_unknown_kind(cipher):
    with pytest.raises(ValueError, match="unknown lookup kind"):
        cipher.lookup_hash("name", "张三")


def test_generate_key_gives_fresh_usable_32_byte_keys():
    first, second = generate_key(), generate_key()
    assert first != second
    data_key, lookup_key = base64.urlsafe_b64decode(first), base64.urlsafe_b64decode(second)
    assert len(data_key) == len(lookup_key) == 32
    cipher = PersonalDataCipher(data_key, lookup_key)
    assert cipher.decrypt(cipher.encrypt("张三")) == "张三"
