"""cosign's own private key files (`cosign generate-key-pair` → cosign.key) wherever regsync takes a
private key: `sign.key`, `audit.sign_key` and `audit merge --sign-key`. The key files come from
cosign's own tests (tests/data/cosign) and from a writer that follows go-securesystemslib's
encrypted.go (tests/fixtures/cosign.py); the format's own test vectors are checked too."""

import base64
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from regsync.trust import cosign_key
from regsync.trust.keys import PublicKey, fingerprint
from regsync.trust.signing import load_private_key, sign_bytes
from tests.fixtures.cosign import make_key, push_image, sign, write_cosign_key, write_public_key
from tests.test_verify_signatures import audit, run, write_policy

DATA = Path(__file__).parent / "data" / "cosign"

# secure-systems-lab/go-securesystemslib encrypted/encrypted_test.go, under the passphrase
# "supersecret": TestDecrypt's Encrypt of "reallyimportant" (Legacy strength), then kdfVectors'
# Standard and OWASP ones, made by Marshal, so their plaintext is that string's JSON ([]byte: base64).
GO_PLAINTEXTS = [b"reallyimportant", b'"cmVhbGx5aW1wb3J0YW50"', b'"cmVhbGx5aW1wb3J0YW50"']
GO_VECTORS = [
    '{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
    '"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
    '"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}',
    '{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},'
    '"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},'
    '"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}',
    '{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},'
    '"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},'
    '"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}',
]
GO_UNSUPPORTED = (
    '{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},'
    '"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},'
    '"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}')


def pem(body: bytes, label="ENCRYPTED SIGSTORE PRIVATE KEY") -> bytes:
    text = base64.b64encode(body).decode()
    lines = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def merge_signed_with(tmp_path, key_path):
    """`audit merge --sign-key`: the CLI path that loads the key before anything else."""
    trail = tmp_path / "trail.jsonl"
    trail.touch()
    return run("audit", "merge", trail, "-o", tmp_path / "merged.jsonl", "--sign-key", key_path)


@pytest.mark.parametrize("vector, plaintext", list(zip(GO_VECTORS, GO_PLAINTEXTS)), ids=["legacy", "standard", "owasp"])
def test_go_securesystemslib_vectors_open_at_each_strength_it_writes(vector, plaintext):
    assert cosign_key.decrypt(pem(vector.encode()), b"supersecret") == plaintext


def test_scrypt_parameters_go_securesystemslib_refuses_are_refused_before_scrypt_runs():
    with pytest.raises(cosign_key.DamagedKeyFile, match="unsupported scrypt parameters N=99, r=99, p=99"):
        cosign_key.decrypt(pem(GO_UNSUPPORTED.encode()), b"supersecret")


@pytest.mark.parametrize("name", ["sigstore-label.key", "cosign-label.key"])
def test_key_files_cosign_wrote_load_and_sign(name, monkeypatch):
    monkeypatch.setenv("COSIGN_PASSWORD", "hello")   # the password cosign's own tests use for them
    key = load_private_key(DATA / name, None, "sign.key")
    public = PublicKey("k", key.public_key(), fingerprint(key.public_key()))
    assert public.algorithm == "ecdsa-secp256r1-sha256"
    assert public.verify(sign_bytes(key, b"payload"), b"payload")


def test_sign_on_import_with_cosign_key_files_verifies_with_their_cosign_pub(tmp_path, registry, registry2,
                                                                            unique_repo, monkeypatch):
    upstream = make_key("ecdsa")
    write_public_key(upstream, tmp_path / "cosign.pub")
    enterprise = make_key("ecdsa")
    expected = write_public_key(enterprise, tmp_path / "enterprise.pub")
    write_cosign_key(enterprise, tmp_path / "enterprise.key", b"ent-Pa55-phrase")
    shutil.copy(DATA / "cosign-label.key", tmp_path / "audit.key")   # password "hello", from COSIGN_PASSWORD
    monkeypatch.setenv("ENTERPRISE_KEY_PASSWORD", "ent-Pa55-phrase")
    monkeypatch.setenv("COSIGN_PASSWORD", "hello")
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, upstream)
    rule = ("    verify: {signature: required, trust: [release]}\n    copy: {signatures: true}\n"
            "    sign: {key: enterprise.key, password_env: ENTERPRISE_KEY_PASSWORD}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule)
    policy.write_text(policy.read_text().replace("audit: {path: audit.jsonl}",
                                                 "audit: {path: audit.jsonl, sign_key: audit.key}"))

    synced = run("sync", "-p", policy)

    assert synced.exit_code == 0, synced.output
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["signed"]["key_fingerprint"] == expected
    verified = run("verify", f"{registry2.host}/{unique_repo}:v1", "--key", tmp_path / "enterprise.pub",
                   "--allow-http-registry")
    assert verified.exit_code == 0, verified.output
    derived = load_private_key(tmp_path / "audit.key").public_key()  # what `cosign public-key` prints
    (tmp_path / "audit.pub").write_bytes(derived.public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    trail = run("audit", "verify", tmp_path / "audit.jsonl", "--key", tmp_path / "audit.pub")
    assert trail.exit_code == 0 and "1 signed run(s) verified" in trail.output, trail.output


def test_a_wrong_or_missing_password_is_exit_2_and_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("COSIGN_PASSWORD", "n0t-hello-Pa55")
    wrong = merge_signed_with(tmp_path, DATA / "sigstore-label.key")
    assert wrong.exit_code == 2, wrong.output
    assert "does not open with the password in COSIGN_PASSWORD" in wrong.stderr
    assert "n0t-hello" not in wrong.output and not (tmp_path / "merged.jsonl").exists()

    monkeypatch.delenv("COSIGN_PASSWORD")
    unset = merge_signed_with(tmp_path, DATA / "sigstore-label.key")
    assert unset.exit_code == 2, unset.output
    assert "environment variable COSIGN_PASSWORD (the key's password) is not set" in unset.stderr


def _cut(raw: bytes) -> bytes:
    return raw[:len(raw) // 2]


def _json_edited(raw: bytes) -> bytes:
    body = base64.b64decode(b"".join(raw.splitlines()[1:-1]))
    return pem(body.replace(b'"salt":"', b'"salt":"!'))


def _flipped(raw: bytes) -> bytes:
    body = bytearray(base64.b64decode(b"".join(raw.splitlines()[1:-1])))
    body[-10] ^= 0x01   # inside the base64 of the ciphertext: still valid base64, other bytes
    return pem(bytes(body))


@pytest.mark.parametrize("damage, says", [
    (_cut, "is a damaged cosign key file: its PEM block is cut"),
    (_json_edited, "is a damaged cosign key file: its content is not the JSON cosign writes"),
    (_flipped, "does not open"),   # secretbox's MAC cannot tell a changed file from a wrong password
], ids=["cut", "json", "ciphertext"])
def test_a_damaged_key_file_is_exit_2_with_a_clear_message(tmp_path, monkeypatch, damage, says):
    monkeypatch.setenv("COSIGN_PASSWORD", "hello")
    damaged = tmp_path / "cosign.key"
    damaged.write_bytes(damage((DATA / "sigstore-label.key").read_bytes()))

    result = merge_signed_with(tmp_path, damaged)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --sign-key: {damaged} ") and says in result.stderr, result.stderr
