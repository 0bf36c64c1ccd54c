"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1:PORT that writes each
message it accepts to OUTDIR as JSON (envelope, headers, decoded text and HTML parts).

Usage: python3 smtp_sink.py PORT OUTDIR   (runs until stdin closes)
"""

import email
import json
import os
import sys
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_subtype()] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": msg["subject"],
            "from": msg["from"],
            "to": msg["to"],
            "message_id": msg["message-id"],
            "content_type": msg.get_content_type(),
            "text": parts.get("plain"),
            "html": parts.get("html"),
        }
        self.count += 1
        path = os.path.join(self.outdir, "%04d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


if __name__ == "__main__":
    port, outdir = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(outdir), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()
