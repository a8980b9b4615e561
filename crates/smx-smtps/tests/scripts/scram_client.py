#!/usr/bin/env python3
"""SCRAM-SHA-256 (RFC 5802, RFC 7677) SMTP AUTH client over STARTTLS.

usage: scram_client.py HOST PORT CAFILE USER PASSWORD
Exit status 0: authenticated and the server's signature verified;
1: the server refused the login; 2: the server's signature was wrong or
the exchange broke.
"""
import base64
import hashlib
import hmac
import os
import smtplib
import ssl
import sys


def b64(b):
    return base64.b64encode(b).decode()


def main():
    host, port, cafile, user, password = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=cafile)
    # The server is reached by address; its certificate names mx.test.example
    # and is still checked against the test CA.
    ctx.check_hostname = False
    s = smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=20)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    if "SCRAM-SHA-256" not in s.esmtp_features.get("auth", ""):
        print("SCRAM-SHA-256 not offered", s.esmtp_features)
        return 2
    cnonce = b64(os.urandom(18))
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={cnonce}"
    code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(("n,," + first_bare).encode()))
    if code != 334:
        print("AUTH:", code, resp)
        return 1
    server_first = base64.b64decode(resp).decode()
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
    if not nonce.startswith(cnonce):
        return 2
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c={b64(b'n,,')},r={nonce}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    code, resp = s.docmd(b64(f"{without_proof},p={b64(proof)}".encode()))
    if code != 334:
        print("final:", code, resp)
        return 1
    server_final = base64.b64decode(resp).decode()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    want = "v=" + b64(hmac.new(server_key, auth_message, hashlib.sha256).digest())
    if server_final != want:
        print("bad server signature", server_final)
        s.docmd("*")
        return 2
    code, resp = s.docmd("")
    if code != 235:
        print("end:", code, resp)
        return 2
    s.mail("s@client.example")
    s.rcpt("relaydenied@remote.example")
    s.data(b"Subject: scram\r\n\r\nbody\r\n")
    s.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
