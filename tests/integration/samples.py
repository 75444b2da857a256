# samples.py FILE: sum up what tests/lib.sh's sample() wrote (one line a sample: "<unix time>
# <exit code> <spotify-token --json output>") as JSON; see summary() in tests/lib.sh.
import json, sys
series, tokens = [], []
expired_printed = 0
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) < 2:
        continue
    t, rc, out = float(parts[0]), int(parts[1]), (parts[2] if len(parts) > 2 else "")
    tok, exp, left = None, None, None
    if out.strip():
        try:
            j = json.loads(out)
            tok, exp, left = j.get("access_token"), j.get("expires_at"), j.get("expires_in")
        except ValueError:
            tok = "<unparsable>"
    if rc == 0 and (left is None or left <= 0):
        expired_printed += 1
    if rc != 0 and out.strip():
        expired_printed += 1
    if rc == 0 and tok and tok not in tokens:
        tokens.append(tok)
    series.append([t, rc, tok, exp, left])
good = sum(1 for s in series if s[1] == 0 and s[4] is not None and s[4] > 0)
print(json.dumps({"n": len(series), "good": good, "bad": len(series) - good,
                  "expired_printed": expired_printed, "tokens": tokens,
                  "first_expires_at": next((s[3] for s in series if s[3]), None),
                  "bad_samples": [s[:2] + [s[4]] for s in series if not (s[1] == 0 and s[4] and s[4] > 0)][:8],
                  "series": series}))
