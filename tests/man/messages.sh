#!/bin/bash
# messages.sh: every message quoted in the README's Troubleshooting tables is one the code can
# print: each is matched against the C string literals of common/, pam/, helper/ and keyring/
# (adjacent literals joined, printf conversions read as the README's "…"). A made-up message must
# fail the same check, so the check itself is proven able to fail.
. "$top_srcdir/tests/lib.sh"

command -v "${PYTHON:-python3}" >/dev/null 2>&1 || skip_all "python3 is not installed"
out=$("${PYTHON:-python3}" - "$top_srcdir" <<'PY'
import glob, os, re, sys

top = sys.argv[1]

MACROS = {}  # NAME -> its text, for #define NAME "literal": joined where the code uses it

def literals(text):
    """The string literals of a C file, adjacent ones (only blanks, comments or string macros
    between) joined."""
    out, i, n, cur, joinable = [], 0, len(text), None, False
    while i < n:
        c = text[i]
        if c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            name = text[i:j]
            if name in MACROS:
                cur = (cur if cur is not None and joinable else "") + MACROS[name]
                i, joinable = j, True
                continue
        if text.startswith("/*", i):
            i = text.index("*/", i + 2) + 2
            continue
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if c == "'":
            j = i + 1
            while text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            i, joinable = j + 1, False
            if cur is not None:
                out.append(cur)
                cur = None
            continue
        if c == '"':
            j, s = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    s.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(text[j + 1], ""))
                    j += 2
                else:
                    s.append(text[j])
                    j += 1
            cur = (cur if cur is not None and joinable else "") + "".join(s)
            i, joinable = j + 1, True
            continue
        if not c.isspace():
            if cur is not None:
                out.append(cur)
                cur = None
            joinable = False
        i += 1
    if cur is not None:
        out.append(cur)
    return out

CONV = re.compile(r"%[-+ #0]*(?:\*|[0-9]+)?(?:\.(?:\*|[0-9]+))?(?:hh|h|ll|l|z|j|t|L)?[diouxXcsp]")
files = [f for d in ("common", "pam", "helper", "keyring") for f in sorted(glob.glob(os.path.join(top, d, "*.[ch]")))]
DEFINE = re.compile(r'^#define\s+(\w+)\s+((?:"(?:[^"\\]|\\.)*"\s*(?:\\\n\s*)?)+)$', re.M)
for f in files:
    for m in DEFINE.finditer(open(f, encoding="utf-8").read()):
        MACROS[m.group(1)] = "".join(literals(m.group(2)))
corpus = []
for f in files:
    for lit in literals(open(f, encoding="utf-8").read()):
        corpus.append(CONV.sub("…", lit).replace("%%", "%").strip())
corpus = [c for c in corpus if c]

PREFIX = re.compile(r"^spotify-token: (?:(?:login|logout|refresh): )?")
STRIP = " \t()[]:;,.'\""

def letters(s):
    return sum(ch.isalnum() for ch in s)

def whole(msg):
    """Some literal, its conversions read as wildcards, matches the whole message, and its own
    text is most of the message (so that "…: …" matches nothing)."""
    for lit in corpus:
        if "…" not in lit and lit != msg:
            continue
        if letters(lit) < 0.4 * letters(msg):
            continue
        rx = ".*".join(re.escape(p) for p in lit.split("…"))
        if re.fullmatch(rx, msg, re.S):
            return True
    return False

def pieces(msg):
    """Each piece between the README's "…" (and, for composed messages, between parentheses and
    ': ') is in some literal. The pieces that fail, empty when none."""
    missing = []
    for part in msg.split("…"):
        part = part.strip(STRIP)
        if not part or any(part in lit for lit in corpus):
            continue
        for sub in re.split(r"[()]|: ", part):
            sub = sub.strip(STRIP)
            if sub and not any(sub in lit for lit in corpus):
                missing.append(sub)
    return missing

def check(msg):
    bare = PREFIX.sub("", msg)
    return [] if whole(msg) or whole(bare) else pieces(bare)

readme = open(os.path.join(top, "README.md"), encoding="utf-8").read()
section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
section = section.split("\n### Messages from Spotify", 1)[0]
quoted = [m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.M)]
print("count %d" % len(quoted))
for msg in quoted:
    missing = check(msg)
    print(("ok\t" if not missing else "missing\t") + msg + ("\t" + " | ".join(missing) if missing else ""))
control = "spotify-token: the token was eaten by a grue: feed it a lamp"
print("control\t" + ("found" if not check(control) else "missing"))
PY
)
count=$(sed -n 's/^count //p' <<<"$out")
expect "the Troubleshooting tables quote at least 25 messages ($count)" '[ "${count:-0}" -ge 25 ]'
while IFS=$'\t' read -r verdict msg why; do
	case $verdict in
	ok) ok "in the code: $msg" ;;
	missing) not_ok "in the code: $msg (not found: $why)" ;;
	esac
done <<<"$out"
expect "a made-up message is reported as not in the code (the check can fail)" \
	'grep -qx "control	missing" <<<"$out"'
done_testing
