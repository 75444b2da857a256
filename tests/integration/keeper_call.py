#!/usr/bin/env python3
"""keeper_call.py SOCKET OP [KEY=VALUE...]: one message to a keeper (helper/keeper.h) or the
system service, in the framed protocol of common/frame.h; prints the answer's header lines
("key value") and nothing of a body. Exit 0 when an answer came, 1 when none (no keeper, or it
did not answer within 5 s)."""
import socket
import struct
import sys


def main():
    path, op, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    head = "op %s\n" % op + "".join("%s %s\n" % tuple(kv.split("=", 1)) for kv in extra) + "\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        data = head.encode()
        s.sendall(struct.pack(">I", len(data)) + data)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return 1
            buf += chunk
    except OSError:
        return 1
    msg = buf[4:4 + struct.unpack(">I", buf[:4])[0]].decode("utf-8", "replace")
    print(msg.split("\n\n", 1)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
