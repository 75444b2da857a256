#!/usr/bin/env python3
"""keeper_call.py [--timeout=S] SOCKET OP [KEY=VALUE...]: one message to a keeper
(helper/keeper.h) or the system service, in the framed protocol of common/frame.h; prints the
answer's header lines ("key value") and nothing of a body. Exit 0 when an answer came, 1 when none
(no keeper, or it did not answer within S seconds, default 5)."""
import socket
import struct
import sys


def main():
    args, timeout = sys.argv[1:], 5.0
    if args and args[0].startswith("--timeout="):
        timeout = float(args.pop(0)[len("--timeout="):])
    path, op, extra = args[0], args[1], args[2:]
    head = "op %s\n" % op + "".join("%s %s\n" % tuple(kv.split("=", 1)) for kv in extra) + "\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
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
