"""One table of git-input cases, run by both sides: the server's policy tests and API tests
(`tests/server/test_validation_rules.py`, `test_bad_input.py`) and the agent's job validation
(`tests/agent/test_validation.py`).

Each refused case carries a fragment of the reason `gitpolicy` gives; the API shows the same
reason on the field, and the agent puts it in its `invalid_job` report.
"""

from __future__ import annotations

from gitpolicy import MAX_BRANCH_LENGTH, MAX_URL_LENGTH, UrlPolicy

STRICT = UrlPolicy(allowed_schemes=frozenset({"https", "ssh"}), allow_private_hosts=False)
OPEN = UrlPolicy(
    allowed_schemes=frozenset({"https", "ssh", "git", "http"}), allow_private_hosts=True
)

# --- Git URLs ---------------------------------------------------------------------------------

NEVER = "never allowed"
LOCAL = "Local paths are not allowed"
CREDENTIALS = "Credentials never travel in URLs"
PRIVATE = "not allowed on this server"
DOTTED_QUAD = "four decimal numbers"
PORT = "port must be a number from 1 to 65535"
QUERY = "query string or a fragment"
PATH_CHARS = "repository path may use"
DOT_SEGMENTS = "'.' or '..' segments"
CONTROL = "whitespace or control characters"
ASCII_ONLY = "must be ASCII"
DNS_NAME = "ASCII DNS name or an IP address"

VALID_URLS = [
    "https://github.com/org/repo.git",
    "https://github.com/org/repo",
    "https://gitlab.example.com:8443/group/sub/repo.git",
    "https://8.8.8.8/org/repo.git",
    "https://[2001:4860:4860::8888]/org/repo.git",
    "ssh://git@host:22/org/repo.git",
    "ssh://git@host/~user/repo.git",
    "ssh://host.example.org/org/repo.git",
    "git@github.com:org/repo.git",
    "github.com:org/repo.git",
    "deploy_bot@git.example.com:/srv/git/repo.git",
    # IPv6 forms that lead to a public IPv4 address: 6to4 and NAT64 (what DNS64 gives an
    # IPv6-only node for an IPv4-only host) of 8.8.8.8.
    "https://[2002:808:808::]/org/repo.git",
    "https://[64:ff9b::808:808]/org/repo.git",
]

# Refused under every policy: (url, reason fragment).
REFUSED_URLS = [
    # Option injection: git would read these as command-line options.
    ("-oProxyCommand=touch_pwned", "may not start with '-'"),
    ("--upload-pack=touch_pwned", "may not start with '-'"),
    ("--upload-pack=touch /tmp/pwned", CONTROL),
    ("-u/bin/sh", "may not start with '-'"),
    ("-uhttps://github.com/org/repo.git", "may not start with '-'"),
    ("ssh://-oProxyCommand=touch_pwned/x", DNS_NAME),
    ("ssh://-oProxyCommand=x@host/x", "ssh user name"),
    ("ssh://-@host/x", "ssh user name"),
    ("git@-oProxyCommand=x:repo", LOCAL),
    ("git@host:--upload-pack=x", PATH_CHARS),
    ("host:-x", "path may not start with '-'"),
    ("git@host:/-x", "path may not start with '-'"),
    ("https://host/-x", "path may not start with '-'"),
    ("https://host//-x", "path may not start with '-'"),
    ("https://-host/x", DNS_NAME),
    # Remote helpers run arbitrary programs.
    ("ext::sh -c touch% /tmp/pwned", CONTROL),
    ("ext::sh", NEVER),
    ("ext::ssh", NEVER),
    ("fd::17", NEVER),
    ("fd::3,4", NEVER),
    ("::x", NEVER),
    ("a.b+c-d::x", NEVER),
    # Local paths: other users' checkouts, the server's files.
    ("file:///etc/passwd", "Scheme 'file' is not allowed"),
    ("file://localhost/etc/passwd", "Scheme 'file' is not allowed"),
    ("/etc", LOCAL),
    ("/etc/passwd", LOCAL),
    ("../x", LOCAL),
    ("./x", LOCAL),
    ("x", LOCAL),
    ("repo.git", LOCAL),
    ("/data/projects/1_x", LOCAL),
    ("../../data/projects/1_x", LOCAL),
    ("C:/repo", LOCAL),
    ("C:\\repo", LOCAL),
    ("git@host:../x", DOT_SEGMENTS),
    # Credentials in the URL.
    ("https://user:pw@host/x", CREDENTIALS),
    ("https://token@host/x", CREDENTIALS),
    ("https://ghp_abcdef0123456789@github.com/org/repo.git", CREDENTIALS),
    ("https://@host/x", CREDENTIALS),
    ("https://user:@host/x", CREDENTIALS),
    ("ssh://user:pw@host/x", CREDENTIALS),
    ("https://host\\@evil.example/x", CREDENTIALS),
    # Loopback in spellings a resolver reads as an address but people do not.
    ("https://2130706433/x", DOTTED_QUAD),
    ("https://0x7f000001/x", DOTTED_QUAD),
    ("https://0x7f.0x0.0x0.0x1/x", DOTTED_QUAD),
    ("https://0177.0.0.1/x", DOTTED_QUAD),
    ("https://127.0.0.01/x", DOTTED_QUAD),
    ("https://127.1/x", DOTTED_QUAD),
    ("https://0x7f.1/x", DOTTED_QUAD),
    ("https://0/x", DOTTED_QUAD),
    ("https://999.1.1.1/x", "not a valid IPv4 address"),
    ("https://1.2.3.4.5/x", "not a valid IPv4 address"),
    # Link-local and cloud metadata, in every spelling.
    ("https://169.254.169.254/latest/meta-data", NEVER),
    ("https://169.254.0.1/x", NEVER),
    ("https://[fe80::1]/x", NEVER),
    ("https://[fe80::1%25eth0]/x", "zone id"),
    ("https://[fd00:ec2::254]/x", NEVER),
    ("https://[::ffff:169.254.169.254]/x", NEVER),
    ("https://[::ffff:a9fe:a9fe]/x", NEVER),
    ("https://[64:ff9b::a9fe:a9fe]/x", NEVER),
    ("https://[2002:a9fe:a9fe::]/x", NEVER),
    ("https://100.100.100.200/x", NEVER),
    ("https://[::ffff:100.100.100.200]/x", NEVER),
    ("https://[64:ff9b::6464:64c8]/x", NEVER),
    # Teredo whose client (obfuscated in the last 32 bits) is 169.254.169.254.
    ("https://[2001:0:4136:e378:8000:63bf:5601:5601]/x", NEVER),
    ("https://metadata.google.internal/computeMetadata/v1", NEVER),
    ("https://METADATA.Google.Internal./x", NEVER),
    ("https://metadata/x", NEVER),
    ("https://instance-data.ec2.internal/x", NEVER),
    ("https://metadata.azure.internal/x", NEVER),
    ("https://instance-data/x", NEVER),
    ("https://Instance-Data./x", NEVER),
    ("git@metadata.google.internal:x", NEVER),
    ("git@[fe80::1]:x", NEVER),
    # Addresses no repository lives at.
    ("https://0.0.0.0/x", "cannot hold a repository"),
    ("https://0.1.2.3/x", "cannot hold a repository"),
    ("https://[::]/x", "cannot hold a repository"),
    ("https://224.0.0.1/x", "cannot hold a repository"),
    ("https://255.255.255.255/x", "cannot hold a repository"),
    ("https://[ff02::1]/x", "cannot hold a repository"),
    # IPv4-compatible IPv6 (deprecated; ::7f00:1 is ::127.0.0.1), and 6to4 of multicast.
    ("https://[::7f00:1]/x", "cannot hold a repository"),
    ("https://[::808:808]/x", "cannot hold a repository"),
    ("https://[2002:e000:1::]/x", "cannot hold a repository"),
    # Ports.
    ("https://host:0/x", PORT),
    ("ssh://git@host:0/x", PORT),
    ("https://host:/x", PORT),
    ("https://host:abc/x", PORT),
    ("https://host:-1/x", PORT),
    ("https://host:+1/x", PORT),
    ("https://host:00443/x", PORT),
    ("https://host:65536/x", PORT),
    ("https://host:99999999999/x", PORT),
    ("https://host:22:22/x", PORT),
    ("https://[::1]:/x", PORT),
    ("https://[::1]x/x", "Only a port may follow"),
    ("https://[::1/x", "Not a valid URL"),
    # Query strings and fragments.
    ("https://host/x?a=b", QUERY),
    ("https://host/x?", QUERY),
    ("https://host/x#frag", QUERY),
    ("https://host/x#", QUERY),
    ("https://host/x.git?upload-pack=touch", QUERY),
    # Dot segments and percent-encoding.
    ("https://host/a/../b", DOT_SEGMENTS),
    ("https://host/a/./b", DOT_SEGMENTS),
    ("https://host/..", DOT_SEGMENTS),
    ("ssh://git@host/../etc", DOT_SEGMENTS),
    ("https://host/%2e%2e/x", PATH_CHARS),
    ("https://host/a%20b", PATH_CHARS),
    ("https://host/a%00b", PATH_CHARS),
    ("https://%31%32%37.0.0.1/x", DNS_NAME),
    ("https://host/a\\b", PATH_CHARS),
    ("https://host/a;b", PATH_CHARS),
    ("https://host/a$(id)", PATH_CHARS),
    ("https://host/a`id`", PATH_CHARS),
    ("https://host/a|b", PATH_CHARS),
    ("https://host/a&b", PATH_CHARS),
    # Whitespace and control characters.
    ("https://host/x\n", CONTROL),
    ("https://host/x\nhttps://other/y", CONTROL),
    ("https://host/x\r", CONTROL),
    ("https://host/x\x00", CONTROL),
    ("https://ho\tst/x", CONTROL),
    (" https://host/x", CONTROL),
    ("https://host/x ", CONTROL),
    ("https://host/x\x7f", CONTROL),
    ("https://host/x\x1b[2J", CONTROL),
    ("https://host/x\u00a0", CONTROL),
    ("https://host/x\u2028", CONTROL),
    # Non-ASCII and homograph hosts.
    ("https://g\u0456thub.com/org/repo.git", ASCII_ONLY),  # Cyrillic \u0456
    ("https://github.c\u043em/org/repo.git", ASCII_ONLY),  # Cyrillic \u043e
    ("https://gith\u057db.com/org/repo.git", ASCII_ONLY),  # Armenian \u057d
    ("https://\uff47ithub.com/org/repo.git", ASCII_ONLY),  # fullwidth g
    ("https://github.com/org/r\u0435po.git", ASCII_ONLY),  # Cyrillic \u0435 in the path
    ("https://github.com\u200b/org/repo.git", ASCII_ONLY),  # zero-width space
    ("https://github.com\u202e/org/repo.git", ASCII_ONLY),  # right-to-left override
    # Malformed hosts and paths.
    ("https:///x", "no host"),
    ("https://host", "no repository path"),
    ("https://host/", "no repository path"),
    ("https://a..b/x", DNS_NAME),
    ("https://.host/x", DNS_NAME),
    ("https://host_x/x", DNS_NAME),
    ("https://host;x/x", DNS_NAME),
    ("https://[v1.x]/x", "not a valid IPv6 address"),
    ("https://[127.0.0.1]/x", "cannot be in brackets"),
    ("git@host:path://x", "Not a valid URL"),
    # Length.
    ("https://host/" + "a" * MAX_URL_LENGTH, f"at most {MAX_URL_LENGTH} characters"),
    # Schemes nobody may use.
    ("ftp://host/x", "Scheme 'ftp' is not allowed"),
    ("ftps://host/x", "Scheme 'ftps' is not allowed"),
    ("ext://host/x", "Scheme 'ext' is not allowed"),
    ("rsync://host/x", "Scheme 'rsync' is not allowed"),
    ("git+ssh://host/x", "Scheme 'git+ssh' is not allowed"),
    ("javascript://host/x", "Scheme 'javascript' is not allowed"),
    ("HTTPS://github.com/org/repo.git", "lower case"),
    ("Ssh://git@host/x", "lower case"),
    ("", "required"),
]

# Loopback, private-network and other non-public hosts: refused by default, allowed by operators.
PRIVATE_URLS = [
    "https://127.0.0.1/x",
    "https://127.0.0.2/x",
    "https://[::1]/x",
    "https://[::1]:8443/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://[::ffff:7f00:1]/x",
    "https://10.0.0.1/x",
    "https://192.168.1.1/x",
    "https://172.16.0.1/x",
    "https://172.31.255.254/x",
    "https://100.64.0.1/x",
    "https://[fd00::1]/x",
    "https://[fc00::1]/x",
    "https://[fec0::1]/x",
    "https://[fec0::1]:8443/x",
    "https://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
    "https://[64:ff9b::a00:1]/x",  # NAT64 of 10.0.0.1
    "https://[2002:a00:1::]/x",  # 6to4 of 10.0.0.1
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
    "https://[2001:db8::1]/x",  # documentation
    "https://100.127.255.254/x",  # carrier-grade NAT
    "https://198.18.0.1/x",  # benchmarking
    "https://192.0.2.1/x",  # documentation
    "https://localhost/x",
    "https://LOCALHOST./x",
    "https://repo.localhost/x",
    "ssh://git@127.0.0.1:2222/x.git",
    "git@127.0.0.1:x.git",
    "git@[::1]:x.git",
    "[::1]:x.git",
]

# Schemes an operator has to switch on (tests do, to serve repositories locally).
OPT_IN_SCHEME_URLS = [
    "http://git.example.com/org/repo.git",
    "git://git.example.com/org/repo.git",
]

# Hosts an outside review found the agent accepting while the server refused them (issue 11,
# finding 4). Each is also in the tables above; both sides run this list under STRICT.
REVIEW_FINDING_URLS = [
    ("https://metadata.azure.internal/x", NEVER),
    ("https://instance-data/x", NEVER),
    ("https://host/x?a=b", QUERY),
    ("https://host/a/../b", DOT_SEGMENTS),
    ("HTTPS://github.com/org/repo.git", "lower case"),
    ("https://host:00443/x", PORT),
    ("https://[::7f00:1]/x", "cannot hold a repository"),
    ("https://[64:ff9b::a9fe:a9fe]/x", NEVER),
    ("https://[2002:a9fe:a9fe::]/x", NEVER),
    ("https://[fec0::1]/x", PRIVATE),
    ("https://100.100.100.200/x", NEVER),
    ("https://127.1/x", DOTTED_QUAD),
    ("https://0x7f.1/x", DOTTED_QUAD),
]


# --- Branch names -----------------------------------------------------------------------------

VALID_BRANCHES = [
    "main",
    "master",
    "feature/login",
    "feature/a/b/c",
    "release-2024.01",
    "v1.0",
    "a.b/c.d",
    "x.lockx",
    "a.lock.b",
    "fix_123",
    "a+b",
    "a#b",
    "a=b",
    "a,b",
    "a@b",
    "@a",
    "a@",
    "@@",
    "a-",
    "HEAD/x",
    "x/HEAD",
    "heads/x",
    "refs",
    "refs-x",
    "x" * MAX_BRANCH_LENGTH,
]

# (name, reason fragment): every rule of `git check-ref-format --branch`.
REFUSED_BY_GIT_RULES = [
    ("", "may not be empty"),
    # 1. no component starts with '.' or ends with '.lock'
    (".hidden", "start with '.'"),
    ("a/.b", "start with '.'"),
    (".", "end with '.'"),
    ("a/.", "end with '.'"),
    ("a.lock", "'.lock'"),
    ("a/b.lock", "'.lock'"),
    ("a.lock/b", "'.lock'"),
    (".lock", "start with '.'"),
    # 3. no '..'
    ("a..b", "'..'"),
    ("..", "'..'"),
    ("a/../b", "'..'"),
    # 4. no ASCII control characters, space, ~ ^ :
    ("a b", "spaces"),
    ("a\tb", "control characters"),
    ("a\nb", "control characters"),
    ("main\n", "control characters"),
    ("a\x00b", "control characters"),
    ("a\x1bb", "control characters"),
    ("a\x7fb", "control characters"),
    ("a~1", "~"),
    ("a^b", "^"),
    ("a:b", ":"),
    # 5. no ? * [
    ("a?b", "?"),
    ("a*b", "*"),
    ("a[b", "["),
    # 6. no leading or trailing '/', no '//'
    ("/a", "start or end with '/'"),
    ("a/", "start or end with '/'"),
    ("/", "start or end with '/'"),
    ("a//b", "'//'"),
    # 7. no trailing '.'
    ("a.", "end with '.'"),
    ("x/y.", "end with '.'"),
    ("foo.lock.", "end with '.'"),
    # 8. no '@{'
    ("a@{b", "'@{'"),
    ("@{-1}", "'@{'"),
    ("a@{", "'@{'"),
    # 10. no backslash
    ("a\\b", "\\"),
    # --branch: not option-like, not HEAD
    ("-x", "start with '-'"),
    ("-", "start with '-'"),
    ("--upload-pack", "start with '-'"),
    ("--upload-pack=touch", "start with '-'"),
    ("HEAD", "not HEAD"),
]

# Refused by Gitfleet though git would take them: short names only, and a character set that
# is safe in shells, logs and terminals.
REFUSED_BY_GITFLEET_RULES = [
    ("@", "not HEAD, @"),  # git --branch reads '@' as HEAD
    ("refs/heads/x", "refs/ path"),
    ("refs/tags/v1", "refs/ path"),
    ("$(id)", "letters, digits"),
    ("`id`", "letters, digits"),
    ("a;b", "letters, digits"),
    ("a|b", "letters, digits"),
    ("a&b", "letters, digits"),
    ("a>b", "letters, digits"),
    ("a'b", "letters, digits"),
    ('a"b', "letters, digits"),
    ("a%b", "letters, digits"),
    ("a!b", "letters, digits"),
    ("{", "letters, digits"),
    ("é", "non-ASCII"),
    ("ma\u0456n", "non-ASCII"),  # Cyrillic \u0456
    ("main\u00a0", "non-ASCII"),
    ("main\u200b", "non-ASCII"),
    ("main\u202e", "non-ASCII"),
    ("x" * (MAX_BRANCH_LENGTH + 1), f"at most {MAX_BRANCH_LENGTH}"),
]
REFUSED_BRANCHES = REFUSED_BY_GIT_RULES + REFUSED_BY_GITFLEET_RULES


# --- Project names ----------------------------------------------------------------------------

VALID_PROJECT_NAMES = [
    "demo",
    "Demo-2",
    "a",
    "0",
    "my.project",
    "my_project",
    "a..b",
    "x.lockfile",
    "a" * 100,
]

PROJECT_NAME_RULE = "Use 1-100 characters"
REFUSED_PROJECT_NAMES = [
    ("", PROJECT_NAME_RULE),
    ("..", PROJECT_NAME_RULE),
    ("../x", PROJECT_NAME_RULE),
    ("../../etc", PROJECT_NAME_RULE),
    ("a/b", PROJECT_NAME_RULE),
    ("a\\b", PROJECT_NAME_RULE),
    ("/abs", PROJECT_NAME_RULE),
    (".", PROJECT_NAME_RULE),
    (".hidden", PROJECT_NAME_RULE),
    ("-rf", PROJECT_NAME_RULE),
    ("--help", PROJECT_NAME_RULE),
    ("_x", PROJECT_NAME_RULE),
    ("a b", PROJECT_NAME_RULE),
    ("demo\n", PROJECT_NAME_RULE),
    ("demo\r", PROJECT_NAME_RULE),
    ("de\x00mo", PROJECT_NAME_RULE),
    ("de\tmo", PROJECT_NAME_RULE),
    ("demo\x7f", PROJECT_NAME_RULE),
    ("d\u0435mo", PROJECT_NAME_RULE),  # Cyrillic \u0435
    ("\uff44emo", PROJECT_NAME_RULE),  # fullwidth d
    ("demo\u200b", PROJECT_NAME_RULE),
    ("demo\u202e", PROJECT_NAME_RULE),
    ("café", PROJECT_NAME_RULE),
    ("a:b", PROJECT_NAME_RULE),
    ("a*b", PROJECT_NAME_RULE),
    ("$(id)", PROJECT_NAME_RULE),
    ("a;b", PROJECT_NAME_RULE),
    ("a" * 101, PROJECT_NAME_RULE),
    ("x.lock", "'.lock'"),
    ("a.b.lock", "'.lock'"),
]


# --- Checkout options: partial-clone filters, sparse folders, refs, submodule URLs ------------

VALID_FILTERS = ["", "blob:none", "tree:0", "blob:limit=1", "blob:limit=10k", "blob:limit=5m"]
REFUSED_FILTERS = [
    ("blob:some", "Use blob:none"),
    ("tree:1", "Use blob:none"),
    ("sparse:oid=HEAD:x", "Use blob:none"),
    ("blob:limit=0", "Use blob:none"),
    ("blob:limit=-1", "Use blob:none"),
    ("blob:limit=2000g", "at most"),
    ("combine:blob:none+tree:0", "Use blob:none"),
    ("blob:none\n", "Use blob:none"),
]
VALID_SPARSE = [[], ["models"], ["models/deep", "src"], ["with space/x", "a.b_c-d"]]
REFUSED_SPARSE = [
    (["../etc"], "'.' or '..'"),
    (["a/../../b"], "'.' or '..'"),
    (["/abs"], "relative"),
    (["a\\b"], "relative"),
    (["a//b"], "empty"),
    (["-option"], "may not start with '-'"),
    (["a\nb"], "Path parts use"),
    (["a\x00b"], "Path parts use"),
    ([".git"], ".git"),
    (["x/.GIT/hooks"], ".git"),
    (["x" * 256], "at most 255"),
    ([f"d{i}" for i in range(101)], "at most 100"),
    (["a", "a"], "twice"),
    ("models", "list"),
]
VALID_REFS = ["main", "v1.4.0", "release/2026-01", "0123456789abcdef0123456789abcdef01234567"]
REFUSED_REFS = [
    ("0123456789ABCDEF0123456789ABCDEF01234567", "lower case"),
    ("-v1", "may not start with '-'"),
    ("refs/tags/v1", "refs/"),
    ("v1..2", "'..'"),
    ("", "may not be empty"),
]
# (submodule URL, parent URL, the URL it resolves to or the reason it is refused)
SUBMODULE_URLS = [
    ("../lib.git", "https://example.com/group/app.git", "https://example.com/group/lib.git"),
    ("./sub.git", "https://example.com/group/app.git", "https://example.com/group/app.git/sub.git"),
    ("https://example.org/x.git", "https://example.com/a.git", "https://example.org/x.git"),
    ("../../../../x.git", "https://example.com/group/app.git", "leaves the server's root"),
    ("ext::sh-c-touch%/tmp/x", "https://example.com/a.git", "Remote helpers"),
    ("file:///etc/x.git", "https://example.com/a.git", "not allowed"),
    ("/srv/git/x.git", "https://example.com/a.git", "Local paths"),
    ("-uupload-pack=touch", "https://example.com/a.git", "may not start with '-'"),
    ("https://169.254.169.254/x.git", "https://example.com/a.git", "Link-local"),
    ("https://10.0.0.1/x.git", "https://example.com/a.git", "not allowed on this server"),
]
