"""A real SMTP server for the e-mail tests (aiosmtpd): plain, with AUTH, or with STARTTLS and
AUTH. Each message it accepts is written to OUT_DIR as JSON: when it was accepted, envelope,
decoded subject, the plain and HTML parts, and the login that authenticated.

usage: smtp_server.py OUT_DIR PORT plain|auth|starttls [CERT KEY]
"""

import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out_dir, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                parts[part.get_content_type()] = part.get_content()
        record = {
            "accepted_ns": time.time_ns(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "to": str(message["to"]),
            "headers": {k: str(v) for k, v in message.items()},
            "text": parts.get("text/plain", ""),
            "html": parts.get("text/html", ""),
            "login": session.login_data.decode() if isinstance(session.login_data, bytes) else None,
            "tls": session.ssl is not None,
        }
        name = os.path.join(out_dir, "%d-%d.json" % (time.time_ns(), os.getpid()))
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 Ok: queued as spyglass-test"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"alerts",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


kwargs = {}
if mode in ("auth", "starttls"):
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=mode == "starttls")
if mode == "starttls":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    kwargs.update(tls_context=context, require_starttls=True)

controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
