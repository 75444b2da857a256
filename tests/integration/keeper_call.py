#!/usr/bin/env python3
"""keeper_call.py [-n N] [-t SECONDS | --timeout=SECONDS] [-s FILE] SOCKET OP [KEY=VALUE...]: one message to a keeper
(helper/keeper.h) or the system service, in the framed protocol of common/frame.h; prints the
answer's header lines ("key value") and nothing of a body. Exit 0 when an answer came, 1 when none
(no keeper, or it did not answer within SECONDS, default 5).

-n N    a flood: N connections, every message sent before any answer is read, then each answer
        on one line ("status S | message M", in the order of the connections; "none" for one that
        did not answer). Exit 0 when all N answered.
-s FILE FILE is created once every message is sent (a test then knows the peer has them while
        the answers are still to come)."""
import socket
import struct
import sys
import time


def frame(op, extra):
    head = "op %s\n" % op + "".join("%s %s\n" % tuple(kv.split("=", 1)) for kv in extra) + "\n"
    data = head.encode()
    return struct.pack(">I", len(data)) + data


def answer(s, deadline):
    """The header of the one frame that comes on s by deadline (time.monotonic), or None."""
    buf = b""
    try:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
    except OSError:
        return None
    msg = buf[4:4 + struct.unpack(">I", buf[:4])[0]].decode("utf-8", "replace")
    return msg.split("\n\n", 1)[0]


def main():
    args, n, secs, sent = sys.argv[1:], 0, 5.0, None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "-n":
            n = int(args.pop(0))
        elif opt == "-t":
            secs = float(args.pop(0))
        elif opt.startswith("--timeout="):
            secs = float(opt[len("--timeout="):])
        elif opt == "-s":
            sent = args.pop(0)
        else:
            sys.exit("keeper_call.py: unknown option " + opt)
    path, op, extra = args[0], args[1], args[2:]
    deadline = time.monotonic() + secs
    socks = []
    for _ in range(max(n, 1)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(secs)
        try:
            s.connect(path)
            s.sendall(frame(op, extra))
        except OSError:
            s.close()
            s = None
        socks.append(s)
    if sent:
        open(sent, "w").close()
    heads = [answer(s, deadline) if s else None for s in socks]
    for s in socks:
        if s:
            s.close()
    if not n:
        if heads[0] is None:
            return 1
        print(heads[0])
        return 0
    for h in heads:
        print(" | ".join(h.splitlines()) if h is not None else "none")
    return 0 if all(h is not None for h in heads) else 1


if __name__ == "__main__":
    sys.exit(main())
