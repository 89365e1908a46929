#!/usr/bin/python3
"""Independent decoders for Ecluse sealed fields and sealed streams.

Written from docs/sealing.md and docs/sealed-stream-format.md only, against Debian's
python3-cryptography primitives (X25519, ECDH P-256, RSA-OAEP, ConcatKDFHash, AES key unwrap,
AES-GCM, HKDF). Every sealed field and every stream key JWE is also decrypted with python3-jwcrypto,
a conforming JOSE library, and both results must agree.

Input (stdin, JSON):
  {"keys": [private JWK, ...],
   "fields": [{"jwe": str, "route": str, "ptr": str, "rid": str|null}, ...],
   "streams": [{"sealed": hex, "route": str|null}, ...]}
Output (stdout, JSON):
  {"fields": [{"ok": true, "plaintext": b64} | {"ok": false, "error": str}, ...],
   "streams": [{"ok": true, "plaintext": hex, "contentType": str, "kid": str} | {"ok": false, ...}],
   "versions": {...}}
"""

import base64
import hashlib
import importlib.metadata
import json
import struct
import sys

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto.common import JWSEHeaderParameter

FIELD_CLAIMS = ("ecl.route", "ecl.ptr", "ecl.rid")
STREAM_CLAIMS = ("ecl.fmt", "ecl.route")
REGISTERED = {"alg", "enc", "kid", "epk", "apu", "apv", "crit", "typ", "cty"}


class Refused(Exception):
    pass


def b64u(s):
    if not isinstance(s, str) or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in s):
        raise Refused("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def uint(b):
    return int.from_bytes(b, "big")


def load_private(jwk):
    kty = jwk["kty"]
    if kty == "OKP" and jwk["crv"] == "X25519":
        return X25519PrivateKey.from_private_bytes(b64u(jwk["d"]))
    if kty == "EC" and jwk["crv"] == "P-256":
        pub = ec.EllipticCurvePublicNumbers(uint(b64u(jwk["x"])), uint(b64u(jwk["y"])), ec.SECP256R1())
        return ec.EllipticCurvePrivateNumbers(uint(b64u(jwk["d"])), pub).private_key()
    if kty == "RSA":
        n, e = uint(b64u(jwk["n"])), uint(b64u(jwk["e"]))
        nums = rsa.RSAPrivateNumbers(
            uint(b64u(jwk["p"])), uint(b64u(jwk["q"])), uint(b64u(jwk["d"])),
            uint(b64u(jwk["dp"])), uint(b64u(jwk["dq"])), uint(b64u(jwk["qi"])),
            rsa.RSAPublicNumbers(e, n))
        return nums.private_key()
    raise Refused("unsupported key")


def length_prefixed(b):
    return struct.pack(">I", len(b)) + b


def own_decrypt(compact, keys, claims, expected):
    """Decrypt a compact JWE of the Ecluse profile with primitives only (RFC 7516/7518)."""
    parts = compact.split(".")
    if len(parts) != 5:
        raise Refused("not five segments")
    protected_b64, ek_b64, iv_b64, ct_b64, tag_b64 = parts
    header = json.loads(b64u(protected_b64).decode("utf-8"))
    for name in header:
        if name not in REGISTERED and name not in claims:
            raise Refused("header parameter not allowed: " + name)
    alg, enc = header.get("alg"), header.get("enc")
    if alg not in ("ECDH-ES+A256KW", "RSA-OAEP-256") or enc != "A256GCM":
        raise Refused("algorithm not allowed")
    crit = header.get("crit")
    present = [c for c in claims if c in header]
    if not isinstance(crit, list) or sorted(crit) != sorted(present) or len(set(crit)) != len(crit):
        raise Refused("crit does not list exactly the claims present")
    for name in claims:
        want = expected.get(name)
        have = header.get(name)
        if want == "*":
            continue
        if have != want:
            raise Refused("context claim %s does not match" % name)
    jwk = keys.get(header.get("kid"))
    if jwk is None or jwk.get("alg") != alg:
        raise Refused("kid not accepted")
    priv = load_private(jwk)
    ek = b64u(ek_b64)
    if alg == "RSA-OAEP-256":
        cek = priv.decrypt(ek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    else:
        epk = header["epk"]
        if isinstance(priv, X25519PrivateKey):
            if epk.get("kty") != "OKP" or epk.get("crv") != "X25519":
                raise Refused("epk curve")
            z = priv.exchange(X25519PublicKey.from_public_bytes(b64u(epk["x"])))
        else:
            if epk.get("kty") != "EC" or epk.get("crv") != "P-256":
                raise Refused("epk curve")
            pub = ec.EllipticCurvePublicNumbers(uint(b64u(epk["x"])), uint(b64u(epk["y"])), ec.SECP256R1()).public_key()
            z = priv.exchange(ec.ECDH(), pub)
        apu = b64u(header.get("apu", ""))
        apv = b64u(header.get("apv", ""))
        # RFC 7518 §4.6.2: AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo (keydatalen = 256).
        other = length_prefixed(alg.encode("ascii")) + length_prefixed(apu) + length_prefixed(apv) + struct.pack(">I", 256)
        kek = ConcatKDFHash(algorithm=hashes.SHA256(), length=32, otherinfo=other).derive(z)
        cek = aes_key_unwrap(kek, ek)
    iv, tag = b64u(iv_b64), b64u(tag_b64)
    if len(iv) != 12 or len(tag) != 16:
        raise Refused("iv or tag length")
    plaintext = AESGCM(cek).decrypt(iv, b64u(ct_b64) + tag, protected_b64.encode("ascii"))
    return header, plaintext


def jwcrypto_decrypt(compact, keys, claims):
    """Decrypt with jwcrypto, which must know our critical claims to accept them."""
    registry = {name: JWSEHeaderParameter("Ecluse context claim", True, True, None) for name in claims}
    header = json.loads(b64u(compact.split(".")[0]).decode("utf-8"))
    key = jwcrypto_jwk.JWK(**keys[header["kid"]])
    token = jwcrypto_jwe.JWE(header_registry=registry)
    token.allowed_algs = ["ECDH-ES+A256KW", "RSA-OAEP-256", "A256GCM"]
    token.deserialize(compact, key=key)
    return token.payload


def open_field(case, keys):
    expected = {"ecl.route": case["route"], "ecl.ptr": case["ptr"], "ecl.rid": case.get("rid")}
    _, plaintext = own_decrypt(case["jwe"], keys, FIELD_CLAIMS, expected)
    other = jwcrypto_decrypt(case["jwe"], keys, FIELD_CLAIMS)
    if other != plaintext:
        raise Refused("jwcrypto and the primitive decoder disagree")
    return {"ok": True, "plaintext": base64.b64encode(plaintext).decode("ascii")}


def open_stream(case, keys):
    data = bytes.fromhex(case["sealed"])
    if len(data) < 12 or data[0:4] != b"ECLS" or data[4] != 1 or data[5] != 0:
        raise Refused("bad fixed header")
    rs, jwe_len = struct.unpack(">IH", data[6:12])
    if rs < 16 or rs > 16 * 1024 * 1024 or jwe_len == 0 or len(data) < 12 + jwe_len:
        raise Refused("bad sizes")
    header = data[: 12 + jwe_len]
    compact = header[12:].decode("ascii")
    route = case.get("route")
    expected = {"ecl.fmt": "ecls/1", "ecl.route": route if route is not None else "*"}
    jose_header, payload = own_decrypt(compact, keys, STREAM_CLAIMS, expected)
    if jwcrypto_decrypt(compact, keys, STREAM_CLAIMS) != payload:
        raise Refused("jwcrypto and the primitive decoder disagree on the stream key")
    doc = json.loads(payload.decode("utf-8"))
    if sorted(doc) != ["cty", "k"]:
        raise Refused("stream key payload members")
    k = b64u(doc["k"])
    if len(k) != 32:
        raise Refused("stream key length")
    info = b"ecluse sealed-stream v1\x00" + hashlib.sha256(header).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=None, info=info).derive(k)
    aead, nonce_base = AESGCM(okm[:32]), uint(okm[32:44])
    wire = rs + 17
    off, index, last, out = len(header), 0, False, []
    while off < len(data):
        if last:
            raise Refused("trailing data after the last record")
        record = data[off : off + wire]
        off += len(record)
        if len(record) < 17:
            raise Refused("record shorter than tag and delimiter")
        nonce = (nonce_base ^ index).to_bytes(12, "big")
        plain = aead.decrypt(nonce, record, None)
        delimiter, body = plain[-1], plain[:-1]
        if delimiter == 1:
            if len(record) != wire:
                raise Refused("short record not marked last")
        elif delimiter == 2:
            last = True
        else:
            raise Refused("invalid delimiter")
        out.append(body)
        index += 1
    if not last:
        raise Refused("truncated: no last record")
    return {"ok": True, "plaintext": b"".join(out).hex(), "contentType": doc["cty"], "kid": jose_header["kid"]}


def guarded(fn, case, keys):
    try:
        return fn(case, keys)
    except Exception as err:  # every failure is a refusal; the reason is for the test log
        return {"ok": False, "error": "%s: %s" % (type(err).__name__, err)}


def main():
    request = json.load(sys.stdin)
    keys = {k["kid"]: k for k in request["keys"]}
    result = {
        "fields": [guarded(open_field, c, keys) for c in request.get("fields", [])],
        "streams": [guarded(open_stream, c, keys) for c in request.get("streams", [])],
        "versions": {"cryptography": cryptography.__version__, "jwcrypto": importlib.metadata.version("jwcrypto"), "python": sys.version.split()[0]},
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
